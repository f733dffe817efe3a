//! Data-driven scenarios for [`decide`] (raft-rs `testdata` style) and the generated transition
//! table `docs/HA-TRANSITIONS.md`.
//!
//! Each case in `src/ha/testdata/*.txt` describes one cycle: the node, PostgreSQL, the DCS, the
//! peers' `GET /patroni` answers, the outcomes of DCS writes, then `----` and the expected result.
//! The runner plays the loop: it answers every [`Step`] the policy asks for from the case, then
//! renders steps, actions, notes, memory changes and the reason. Grammar (one directive per line):
//!
//! ```text
//! case <name>                 cite <Patroni function>      state <text>      event <text>
//! me <name> [nofailover] [priority=N] [clonefrom] [replicatefrom=X] [nostream] [bootstrap]
//!           [no_leader_replica] [watchdog=ready|unusable]
//! pg <running|starting|stopped|crashed> [primary|replica] [lsn=N] [tl=N] [sysid=S|none]
//!    [data=ok|empty|broken] [control=in_production|in_crash_recovery|shutting_down|shut_down|
//!    shut_down_in_recovery|in_archive_recovery] [upstream=X] [role=R] [recovery_conf]
//! policy [pause] [failsafe] [sync=on|quorum] [strict] [max_lag=N] [check_timeline] [rewind] [reinit_on_diverge]
//!        [fence=off] [strict_sync_failover=on|off] [silence_ms=N]
//! confirm [replicas_ms=N] [sync_ms=N]    (the WAL-confirmation sampler's conclusion; absent = not measured)
//! timing [ttl=S] [loop_wait=S] [retry_timeout=S] [primary_start_timeout=S]
//! dcs down | dcs [leader=X] [initialize=S|none|empty] [optime=N] [timeline=N] [config=no]
//!    [failover=FROM>TO] [failover_at=ISO] [sync=LEADER:a,b] [quorum=N] [failsafe=a,b]
//! member <name> [replica|primary] [lsn=N] [tl=N] [state=S] [nofailover] [priority=N] [clonefrom] [noapi]
//! peer <name> unreachable | primary | replica [lsn=N] [tl=N] [priority=N] [nofailover] [watchdog_failed]
//! mem [leader_until=S] [old=LEADER:a,b] [crash_recovery=S] [starting_since=S] [recovering]
//!     [bootstrapping] [was_paused] [result=true|false] [rewind=check|need|success|failed] [released_at=S]
//!     [cb_called] [failsafe=a,b] [handed_over=S]
//! inflight <promote|restart|crash_recovery|bootstrap|post_bootstrap|rewind|starting_primary|restarting>
//!          [since=S]
//! finished <bootstrap_failed|post_bootstrap_ok|post_bootstrap_failed|pre_promote_failed|rewind_ok|rewind_failed>
//! ping <name> [at=S]          now <S>          wall <ISO>
//! restart <ISO> [started=T] [role=R] [version=V] [pending] [timeout=S]   (scheduled restart)
//! (pg also takes [started=T] [version=N] [pending_restart])
//! step [acquire=O] [update=O] [initialize=O] [sync_prepromote=O] [failsafe=accepted|rejected]
//!      [rewind=needed|not_needed|unknown|leader_unavailable]        (O = done|refused|dcs_error)
//! ----
//! steps: … / note: … / actions: … / mem: … / reason: …
//! ```
//! Defaults: `now 1000`, `wall 2026-09-01T10:00:00+00:00`, Patroni's default timing, and the local
//! node is a cluster member. Members get `api_url http://<name>:8008/patroni`.

use super::action::{Decision, Step};
use super::decide::{Memory, RewindState, decide};
use super::failover::KnownMember;
use super::snapshot::*;
use crate::dcs::model::{
    Cluster, ClusterConfig, Failover, History, HistoryLine, Leader, Member, MemberData, Status, Version,
};
use crate::types::{Lsn, Role};
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

const SYSID: &str = "7000000000000000001";

fn testdata_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src/ha/testdata")
}

/// One parsed case.
#[derive(Clone, Debug, Default)]
struct Case {
    file: String,
    name: String,
    cite: String,
    state: String,
    event: String,
    input: Vec<String>,
    expected: String,
}

fn parse_file(file: &str, text: &str) -> Vec<Case> {
    let mut cases = Vec::new();
    let mut cur: Option<Case> = None;
    let mut in_expect = false;
    for raw in text.lines() {
        let line = raw.trim_end();
        if line.trim_start().starts_with('#') {
            continue;
        }
        if let Some(name) = line.strip_prefix("case ") {
            if let Some(c) = cur.take() {
                cases.push(c);
            }
            cur = Some(Case { file: file.to_string(), name: name.trim().to_string(), ..Default::default() });
            in_expect = false;
            continue;
        }
        let Some(c) = cur.as_mut() else {
            assert!(line.trim().is_empty(), "{file}: text outside a case: {line:?}");
            continue;
        };
        if line == "----" {
            in_expect = true;
        } else if in_expect {
            if !line.trim().is_empty() {
                c.expected.push_str(line.trim());
                c.expected.push('\n');
            }
        } else if let Some(v) = line.strip_prefix("cite ") {
            c.cite = v.trim().to_string();
        } else if let Some(v) = line.strip_prefix("state ") {
            c.state = v.trim().to_string();
        } else if let Some(v) = line.strip_prefix("event ") {
            c.event = v.trim().to_string();
        } else if !line.trim().is_empty() {
            c.input.push(line.trim().to_string());
        }
    }
    if let Some(c) = cur.take() {
        cases.push(c);
    }
    cases
}

fn all_cases() -> Vec<Case> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(testdata_dir())
        .expect("read src/ha/testdata")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "txt"))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for f in files {
        let name = f.file_name().expect("file name").to_string_lossy().to_string();
        let text = std::fs::read_to_string(&f).expect("read scenario file");
        out.extend(parse_file(&name, &text));
    }
    out
}

/// A case turned into owned inputs.
struct World {
    me: LocalIdentity,
    pg: PgState,
    policy: DynamicPolicy,
    timing: Timing,
    cluster: Result<Cluster, DcsUnavailable>,
    peers: BTreeMap<String, PeerStatus>,
    mem: Memory,
    in_flight: Option<LongAction>,
    finished: Vec<Finished>,
    ping: Option<FailsafePing>,
    restart: Option<ScheduledRestart>,
    now: MonoTime,
    wall: chrono::DateTime<chrono::Utc>,
    outcomes: StepResults,
    confirmation: Option<super::fence::WalConfirmation>,
}

fn kv(tok: &str) -> (&str, &str) {
    tok.split_once('=').unwrap_or((tok, ""))
}

fn num(v: &str, what: &str) -> u64 {
    v.parse().unwrap_or_else(|_| panic!("{what}: not a number: {v:?}"))
}

fn secs(v: &str) -> MonoTime {
    MonoTime::from_secs(num(v, "seconds"))
}

fn write_outcome(v: &str) -> WriteOutcome {
    match v {
        "done" => WriteOutcome::Done,
        "refused" => WriteOutcome::Refused,
        "dcs_error" => WriteOutcome::DcsError,
        o => panic!("unknown write outcome {o:?}"),
    }
}

fn outcome_name(o: WriteOutcome) -> &'static str {
    match o {
        WriteOutcome::Done => "done",
        WriteOutcome::Refused => "refused",
        WriteOutcome::DcsError => "dcs_error",
    }
}

fn tags_of(toks: &[&str]) -> Map<String, Value> {
    let mut t = Map::new();
    for tok in toks {
        match kv(tok) {
            ("nofailover", _) => {
                t.insert("nofailover".into(), json!(true));
            }
            ("priority", v) => {
                t.insert("failover_priority".into(), json!(num(v, "priority")));
            }
            ("clonefrom", _) => {
                t.insert("clonefrom".into(), json!(true));
            }
            _ => {}
        }
    }
    t
}

fn member(name: &str, toks: &[&str]) -> Member {
    let mut d = MemberData {
        conn_url: format!("postgres://{name}:5432/postgres"),
        api_url: format!("http://{name}:8008/patroni"),
        state: "running".into(),
        role: Role::Replica,
        version: "4.1.5".into(),
        ..Default::default()
    };
    for tok in toks {
        match kv(tok) {
            ("primary", _) => d.role = Role::Primary,
            ("replica", _) => d.role = Role::Replica,
            ("lsn", v) => d.xlog_location = Some(num(v, "lsn")),
            ("tl", v) => d.timeline = Some(num(v, "tl")),
            ("state", v) => d.state = v.replace('_', " "),
            ("noapi", _) => d.api_url.clear(),
            _ => {}
        }
    }
    let tags = tags_of(toks);
    if !tags.is_empty() {
        d.tags = Some(tags);
    }
    Member { name: name.to_string(), data: d, version: Version(1), owner: None }
}

fn build(case: &Case) -> World {
    let mut w = World {
        me: LocalIdentity::default(),
        pg: PgState { sysid: Some(SYSID.into()), data_dir: DataDir::Initialized, ..Default::default() },
        policy: DynamicPolicy::default(),
        timing: Timing::default(),
        cluster: Ok(Cluster {
            initialize: Some(SYSID.into()),
            config: Some(ClusterConfig {
                data: json!({"ttl": 30}).as_object().cloned().unwrap_or_default(),
                version: Version(1),
            }),
            ..Default::default()
        }),
        peers: BTreeMap::new(),
        mem: Memory::default(),
        in_flight: None,
        finished: Vec::new(),
        ping: None,
        restart: None,
        now: MonoTime::from_secs(1000),
        wall: chrono::DateTime::parse_from_rfc3339("2026-09-01T10:00:00+00:00").expect("valid").into(),
        outcomes: StepResults::default(),
        confirmation: None,
    };
    let mut members: Vec<Member> = Vec::new();
    let mut pg_role_set = false;
    for line in &case.input {
        let toks: Vec<&str> = line.split_whitespace().collect();
        let (head, rest) = (toks[0], &toks[1..]);
        match head {
            "me" => {
                w.me.name = rest[0].to_string();
                for tok in &rest[1..] {
                    match kv(tok) {
                        ("nofailover", _) => {
                            w.me.tags.nofailover = true;
                            w.me.tags.failover_priority = 0;
                        }
                        ("priority", v) => {
                            w.me.tags.failover_priority = num(v, "priority") as i64;
                            w.me.tags.nofailover = w.me.tags.failover_priority <= 0;
                        }
                        ("clonefrom", _) => w.me.tags.clonefrom = true,
                        ("replicatefrom", v) => w.me.tags.replicatefrom = Some(v.into()),
                        ("nostream", _) => w.me.tags.nostream = true,
                        ("bootstrap", _) => w.me.has_bootstrap_section = true,
                        ("no_leader_replica", _) => w.me.can_create_replica_without_leader = true,
                        ("watchdog", "ready") => w.me.watchdog = WatchdogState::Ready,
                        ("watchdog", "unusable") => w.me.watchdog = WatchdogState::Unusable,
                        other => panic!("{}: me: unknown {other:?}", case.name),
                    }
                }
            }
            "pg" => {
                w.pg.run = match rest[0] {
                    "running" => PgRun::Running,
                    "starting" => PgRun::Starting,
                    "stopped" => PgRun::Stopped,
                    "crashed" => PgRun::Crashed,
                    o => panic!("{}: pg: unknown run state {o:?}", case.name),
                };
                for tok in &rest[1..] {
                    match kv(tok) {
                        ("primary", _) => {
                            w.pg.is_in_recovery = Some(false);
                            if !pg_role_set {
                                w.pg.role = Role::Primary;
                            }
                        }
                        ("replica", _) => {
                            w.pg.is_in_recovery = Some(true);
                            if !pg_role_set {
                                w.pg.role = Role::Replica;
                            }
                        }
                        ("role", v) => {
                            w.pg.role = Role::parse(v);
                            pg_role_set = true;
                        }
                        ("lsn", v) => {
                            let l = Some(Lsn(num(v, "lsn")));
                            (w.pg.flush_lsn, w.pg.receive_lsn, w.pg.replay_lsn) = (l, l, l);
                        }
                        ("tl", v) => w.pg.timeline = Some(num(v, "tl")),
                        ("sysid", "none") => w.pg.sysid = None,
                        ("sysid", v) => w.pg.sysid = Some(v.into()),
                        ("data", "ok") => w.pg.data_dir = DataDir::Initialized,
                        ("data", "empty") => w.pg.data_dir = DataDir::Empty,
                        ("data", "broken") => {
                            w.pg.data_dir = DataDir::Inaccessible("Permission denied".into())
                        }
                        ("control", v) => {
                            w.pg.control_state = Some(ControlState::parse(&v.replace('_', " ")))
                        }
                        ("upstream", v) => w.pg.upstream = Some(HostPort { host: v.into(), port: 5432 }),
                        ("recovery_conf", _) => w.pg.recovery_conf_exists = true,
                        ("started", v) => w.pg.postmaster_start_time = Some(v.into()),
                        ("version", v) => w.pg.server_version = Some(num(v, "version") as u32),
                        ("pending_restart", _) => w.pg.pending_restart = true,
                        other => panic!("{}: pg: unknown {other:?}", case.name),
                    }
                }
            }
            "policy" => {
                for tok in rest {
                    match kv(tok) {
                        ("pause", _) => w.policy.pause = true,
                        ("failsafe", _) => w.policy.failsafe_mode = true,
                        ("sync", "on") => w.policy.synchronous_mode = SyncMode::On,
                        ("sync", "quorum") => w.policy.synchronous_mode = SyncMode::Quorum,
                        ("strict", _) => w.policy.synchronous_mode_strict = true,
                        ("fence", "off") => w.policy.partition.fence_isolated_primary = false,
                        ("strict_sync_failover", v) => w.policy.partition.strict_sync_failover = v == "on",
                        ("silence_ms", v) => {
                            w.policy.partition.replica_silence = Duration::from_millis(num(v, "silence_ms"))
                        }
                        ("max_lag", v) => w.policy.maximum_lag_on_failover = num(v, "max_lag"),
                        ("check_timeline", _) => w.policy.check_timeline = true,
                        ("rewind", _) => w.policy.can_rewind = true,
                        ("reinit_on_diverge", _) => {
                            w.policy.remove_data_directory_on_diverged_timelines = true
                        }
                        other => panic!("{}: policy: unknown {other:?}", case.name),
                    }
                }
            }
            "timing" => {
                for tok in rest {
                    let (k, v) = kv(tok);
                    let d = Duration::from_secs(num(v, k));
                    match k {
                        "ttl" => w.timing.ttl = d,
                        "loop_wait" => w.timing.loop_wait = d,
                        "retry_timeout" => w.timing.retry_timeout = d,
                        "primary_start_timeout" => w.timing.primary_start_timeout = d,
                        other => panic!("{}: timing: unknown {other:?}", case.name),
                    }
                }
            }
            "dcs" if rest.first() == Some(&"down") => {
                w.cluster = Err(DcsUnavailable("etcd: connection refused".into()));
            }
            "dcs" => {
                let c = w.cluster.as_mut().expect("dcs directives after `dcs down`");
                for tok in rest {
                    match kv(tok) {
                        ("leader", v) => {
                            c.leader = Some(Leader { name: v.into(), version: Version(5), owner: None })
                        }
                        ("initialize", "none") => c.initialize = None,
                        ("initialize", "empty") => c.initialize = Some(String::new()),
                        ("initialize", v) => c.initialize = Some(v.into()),
                        ("optime", v) => {
                            c.status = Status { optime: Some(num(v, "optime")), ..Default::default() }
                        }
                        ("timeline", v) => {
                            let tl = num(v, "timeline");
                            let lines = (1..tl)
                                .map(|t| HistoryLine {
                                    timeline: t,
                                    lsn: t * 1000,
                                    reason: "no recovery target specified".into(),
                                    timestamp: Some("2026-09-01T09:00:00+00:00".into()),
                                    new_leader: Some("pgX".into()),
                                })
                                .collect();
                            c.history = Some(History { lines, version: Version(2) });
                        }
                        ("config", "no") => c.config = None,
                        ("failover", v) => {
                            let (l, m) = v.split_once('>').unwrap_or((v, ""));
                            let f = c.failover.get_or_insert_with(|| Failover {
                                version: Some(Version(9)),
                                ..Default::default()
                            });
                            f.leader = (!l.is_empty()).then(|| l.to_string());
                            f.member = (!m.is_empty()).then(|| m.to_string());
                        }
                        ("failover_at", v) => {
                            let f = c.failover.get_or_insert_with(|| Failover {
                                version: Some(Version(9)),
                                ..Default::default()
                            });
                            f.scheduled_at = Some(v.into());
                        }
                        ("sync", v) => {
                            let (l, s) = v.split_once(':').unwrap_or((v, ""));
                            c.sync.leader = Some(l.into());
                            c.sync.sync_standby = (!s.is_empty()).then(|| s.to_string());
                            c.sync.version = Some(Version(3));
                        }
                        ("quorum", v) => c.sync.quorum = num(v, "quorum") as u32,
                        ("failsafe", v) => {
                            c.failsafe = Some(
                                v.split(',')
                                    .map(|n| (n.to_string(), format!("http://{n}:8008/patroni")))
                                    .collect(),
                            )
                        }
                        other => panic!("{}: dcs: unknown {other:?}", case.name),
                    }
                }
            }
            "confirm" => {
                let mut c = super::fence::WalConfirmation::default();
                for tok in rest {
                    match kv(tok) {
                        ("replicas_ms", v) => {
                            c.replicas_silent_for = Duration::from_millis(num(v, "replicas_ms"))
                        }
                        ("sync_ms", v) => c.sync_silent_for = Duration::from_millis(num(v, "sync_ms")),
                        other => panic!("{}: confirm: unknown {other:?}", case.name),
                    }
                }
                w.confirmation = Some(c);
            }
            "member" => members.push(member(rest[0], &rest[1..])),
            "peer" => {
                let mut st = PeerStatus::unreachable();
                for tok in &rest[1..] {
                    match kv(tok) {
                        ("unreachable", _) => {}
                        ("primary", _) => {
                            st.reachable = true;
                            st.in_recovery = Some(false);
                        }
                        ("replica", _) => {
                            st.reachable = true;
                            st.in_recovery = Some(true);
                        }
                        ("lsn", v) => st.wal_position = num(v, "lsn"),
                        ("tl", v) => st.timeline = num(v, "tl"),
                        ("priority", v) => {
                            st.failover_priority = num(v, "priority") as i64;
                            st.nofailover = st.failover_priority <= 0;
                        }
                        ("nofailover", _) => {
                            st.nofailover = true;
                            st.failover_priority = 0;
                        }
                        ("watchdog_failed", _) => st.watchdog_failed = true,
                        other => panic!("{}: peer: unknown {other:?}", case.name),
                    }
                }
                w.peers.insert(rest[0].to_string(), st);
            }
            "mem" => {
                for tok in rest {
                    match kv(tok) {
                        ("leader_until", v) => w.mem.leader_until = Some(secs(v)),
                        ("old", v) => {
                            let (l, ms) = v.split_once(':').unwrap_or((v, ""));
                            let known = ms
                                .split(',')
                                .filter(|n| !n.is_empty())
                                .map(|n| KnownMember {
                                    name: n.into(),
                                    api_url: format!("http://{n}:8008/patroni"),
                                    nofailover: false,
                                })
                                .collect();
                            let leader = (!l.is_empty()).then(|| l.to_string());
                            w.mem.old_cluster = Some(super::decide::OldCluster { leader, members: known });
                        }
                        ("crash_recovery", v) => w.mem.crash_recovery_started = Some(secs(v)),
                        ("starting_since", v) => w.mem.starting_since = Some(secs(v)),
                        ("recovering", _) => w.mem.recovering = true,
                        ("bootstrapping", _) => w.mem.bootstrapping = true,
                        ("was_paused", _) => w.mem.was_paused = true,
                        ("result", v) => w.mem.task_result = Some(v == "true"),
                        ("rewind", v) => {
                            w.mem.rewind = match v {
                                "check" => RewindState::Check,
                                "need" => RewindState::Need,
                                "not_need" => RewindState::NotNeed,
                                "success" => RewindState::Success,
                                "failed" => RewindState::Failed,
                                o => panic!("rewind state {o:?}"),
                            }
                        }
                        ("released_at", v) => w.mem.released_leader_key_at = Some(secs(v)),
                        ("cb_called", _) => w.mem.cb_called = true,
                        ("handed_over", v) => w.mem.handed_over_at = Some(secs(v)),
                        ("failsafe", v) => {
                            w.mem.last_failsafe = Some(
                                v.split(',')
                                    .map(|n| (n.to_string(), format!("http://{n}:8008/patroni")))
                                    .collect(),
                            )
                        }
                        other => panic!("{}: mem: unknown {other:?}", case.name),
                    }
                }
            }
            "inflight" => {
                let kind = match rest[0] {
                    "promote" => LongActionKind::Promote,
                    "restart" => LongActionKind::Restart,
                    "crash_recovery" => LongActionKind::CrashRecovery,
                    "bootstrap" => LongActionKind::Bootstrap,
                    "post_bootstrap" => LongActionKind::PostBootstrap,
                    "rewind" => LongActionKind::Rewind("pg0".into()),
                    "starting_primary" => LongActionKind::StartingPrimaryAfterFailure,
                    "restarting" => LongActionKind::RestartingAfterFailure,
                    o => panic!("{}: inflight: unknown {o:?}", case.name),
                };
                let since = rest.iter().find_map(|t| t.strip_prefix("since=")).map(secs).unwrap_or(w.now);
                w.in_flight = Some(LongAction { kind, started_at: since });
            }
            "finished" => w.finished.push(match rest[0] {
                "bootstrap_failed" => Finished::Bootstrap { ok: false },
                "post_bootstrap_ok" => Finished::PostBootstrap { ok: true },
                "post_bootstrap_failed" => Finished::PostBootstrap { ok: false },
                "pre_promote_failed" => Finished::Promote { pre_promote_ok: false },
                "rewind_ok" => Finished::Rewind { ok: true },
                "rewind_failed" => Finished::Rewind { ok: false },
                o => panic!("{}: finished: unknown {o:?}", case.name),
            }),
            "ping" => {
                let at = rest.iter().find_map(|t| t.strip_prefix("at=")).map(secs).unwrap_or(w.now);
                w.ping = Some(FailsafePing {
                    name: rest[0].into(),
                    conn_url: Some(format!("postgres://{}:5432/postgres", rest[0])),
                    api_url: Some(format!("http://{}:8008/patroni", rest[0])),
                    received_at: at,
                });
            }
            "restart" => {
                let mut r = ScheduledRestart { schedule: rest[0].into(), ..Default::default() };
                for tok in &rest[1..] {
                    match kv(tok) {
                        ("started", v) => r.postmaster_start_time = Some(v.into()),
                        ("role", v) => r.role = Some(Role::parse(v)),
                        ("version", v) => r.postgres_version = Some(v.into()),
                        ("pending", _) => r.restart_pending = true,
                        ("timeout", v) => r.timeout = Some(Duration::from_secs(num(v, "timeout"))),
                        other => panic!("{}: restart: unknown {other:?}", case.name),
                    }
                }
                w.restart = Some(r);
            }
            "now" => w.now = secs(rest[0]),
            "wall" => w.wall = chrono::DateTime::parse_from_rfc3339(rest[0]).expect("wall: ISO time").into(),
            "step" => {
                for tok in rest {
                    match kv(tok) {
                        ("acquire", v) => w.outcomes.lock_acquire = Some(write_outcome(v)),
                        ("update", v) => w.outcomes.lock_update = Some(write_outcome(v)),
                        ("initialize", v) => w.outcomes.initialize_race = Some(write_outcome(v)),
                        ("sync_prepromote", v) => w.outcomes.sync_prepromote = Some(write_outcome(v)),
                        ("failsafe", v) => w.outcomes.failsafe_accepted = Some(v == "accepted"),
                        ("rewind", v) => {
                            w.outcomes.rewind_check = Some(match v {
                                "needed" => RewindCheck::Needed,
                                "not_needed" => RewindCheck::NotNeeded,
                                "leader_unavailable" => RewindCheck::LeaderUnavailable,
                                _ => RewindCheck::Unknown,
                            })
                        }
                        other => panic!("{}: step: unknown {other:?}", case.name),
                    }
                }
            }
            other => panic!("{}: unknown directive {other:?}", case.name),
        }
    }
    assert!(!w.me.name.is_empty(), "{}: missing `me`", case.name);
    if let Ok(c) = w.cluster.as_mut() {
        if !members.iter().any(|m| m.name == w.me.name) {
            let mut toks = vec![if w.pg.is_in_recovery == Some(false) { "primary" } else { "replica" }];
            if w.me.tags.nofailover {
                toks.push("nofailover");
            }
            members.push(member(&w.me.name, &toks));
        }
        members.sort_by(|a, b| a.name.cmp(&b.name));
        c.members = members;
    }
    w
}

/// What the runner saw: each step asked for (with the answer given) and the final decision.
struct Run {
    steps: Vec<String>,
    decision: Decision,
    mem_before: Memory,
}

fn run_world(case: &Case, w: &World) -> Run {
    let mut results = StepResults::default();
    let mut steps = Vec::new();
    for _ in 0..10 {
        let snap = Snapshot {
            now: w.now,
            wall: w.wall,
            me: &w.me,
            cluster: w.cluster.as_ref().map_err(|e| e.clone()),
            pg: &w.pg,
            policy: &w.policy,
            timing: w.timing,
            in_flight: w.in_flight.as_ref(),
            finished: &w.finished,
            failsafe_ping: w.ping.as_ref(),
            scheduled_restart: w.restart.as_ref(),
            steps: &results,
            wal_confirmation: w.confirmation,
        };
        let d = decide(&snap, &w.mem);
        let Some(step) = d.step.clone() else {
            return Run { steps, decision: d, mem_before: w.mem.clone() };
        };
        assert!(d.actions.is_empty(), "{}: a decision with a step must carry no actions", case.name);
        let name = &case.name;
        let step_text = step.to_string();
        let missing =
            || -> ! { panic!("{name}: the policy asked for {step_text} but the case gives no outcome") };
        let answer = match &step {
            Step::FetchPeers(targets) => {
                assert!(results.peers.is_none(), "{}: FetchPeers asked twice", case.name);
                let map: BTreeMap<String, PeerStatus> = targets
                    .iter()
                    .filter_map(|t| Some((t.name.clone(), w.peers.get(&t.name)?.clone())))
                    .collect();
                results.peers = Some(map);
                String::new()
            }
            Step::PostFailsafe(_) => {
                let a = w.outcomes.failsafe_accepted.unwrap_or_else(|| missing());
                results.failsafe_accepted = Some(a);
                format!("={}", if a { "accepted" } else { "rejected" })
            }
            Step::CheckRewind(_) => {
                let a = w.outcomes.rewind_check.unwrap_or_else(|| missing());
                results.rewind_check = Some(a);
                format!(
                    "={}",
                    match a {
                        RewindCheck::Needed => "needed",
                        RewindCheck::NotNeeded => "not_needed",
                        RewindCheck::Unknown => "unknown",
                        RewindCheck::LeaderUnavailable => "leader_unavailable",
                    }
                )
            }
            Step::UpdateLock { .. } => {
                assert!(results.lock_update.is_none(), "{}: UpdateLock asked twice", case.name);
                let a = w.outcomes.lock_update.unwrap_or_else(|| missing());
                results.lock_update = Some(a);
                format!("={}", outcome_name(a))
            }
            Step::AcquireLock => {
                assert!(results.lock_acquire.is_none(), "{}: AcquireLock asked twice", case.name);
                let a = w.outcomes.lock_acquire.unwrap_or_else(|| missing());
                results.lock_acquire = Some(a);
                format!("={}", outcome_name(a))
            }
            Step::RaceInitialize => {
                let a = w.outcomes.initialize_race.unwrap_or_else(|| missing());
                results.initialize_race = Some(a);
                format!("={}", outcome_name(a))
            }
            Step::WriteSyncPrePromote { .. } => {
                let a = w.outcomes.sync_prepromote.unwrap_or_else(|| missing());
                results.sync_prepromote = Some(a);
                format!("={}", outcome_name(a))
            }
        };
        steps.push(format!("{step}{answer}"));
    }
    panic!("{}: decide asked for more than 10 steps", case.name)
}

fn mem_changes(before: &Memory, after: &Memory) -> Vec<String> {
    let t = |m: Option<MonoTime>| m.map(|m| m.0.as_secs().to_string()).unwrap_or_else(|| "none".into());
    let mut v = Vec::new();
    if before.leader_until != after.leader_until {
        v.push(format!("leader_until={}", t(after.leader_until)));
    }
    if before.bootstrapping != after.bootstrapping {
        v.push(format!("bootstrapping={}", after.bootstrapping));
    }
    if before.recovering != after.recovering {
        v.push(format!("recovering={}", after.recovering));
    }
    if before.rewind != after.rewind {
        v.push(format!("rewind={:?}", after.rewind).to_lowercase());
    }
    if before.crash_recovery_started != after.crash_recovery_started {
        v.push(format!("crash_recovery={}", t(after.crash_recovery_started)));
    }
    if before.released_leader_key_at != after.released_leader_key_at {
        v.push(format!("released_at={}", t(after.released_leader_key_at)));
    }
    if before.handed_over_at != after.handed_over_at {
        v.push(format!("handed_over={}", t(after.handed_over_at)));
    }
    if before.start_timeout != after.start_timeout {
        let t = after.start_timeout.map(|d| d.as_secs().to_string()).unwrap_or_else(|| "none".into());
        v.push(format!("start_timeout={t}"));
    }
    if before.starting_since != after.starting_since {
        v.push(format!("starting_since={}", t(after.starting_since)));
    }
    v
}

fn render(run: &Run) -> String {
    let d = &run.decision;
    let mut out = String::new();
    if !run.steps.is_empty() {
        out.push_str(&format!("steps: {}\n", run.steps.join(" ")));
    }
    for n in &d.notes {
        out.push_str(&format!("note: {n}\n"));
    }
    let actions: Vec<String> = d.actions.iter().map(|a| a.to_string()).collect();
    out.push_str(&format!("actions: {}\n", if actions.is_empty() { "-".into() } else { actions.join(" ") }));
    let mem = mem_changes(&run.mem_before, &d.next);
    if !mem.is_empty() {
        out.push_str(&format!("mem: {}\n", mem.join(" ")));
    }
    if let Some(w) = d.wake_after {
        out.push_str(&format!("wake_after: {}s\n", w.as_secs()));
    }
    out.push_str(&format!("reason: {}\n", d.log_line()));
    out
}

fn run_case(case: &Case) -> (String, Run) {
    let w = build(case);
    let run = run_world(case, &w);
    (render(&run), run)
}

fn check(case: &Case) {
    let (got, _) = run_case(case);
    assert_eq!(
        got, case.expected,
        "\nscenario {} ({}) [{}]\n--- expected ---\n{}--- got ---\n{}",
        case.name, case.file, case.cite, case.expected, got
    );
}

fn run_named(name: &str) {
    let cases = all_cases();
    let case = cases.iter().find(|c| c.name == name).unwrap_or_else(|| panic!("no scenario named {name}"));
    check(case);
}

/// Markdown transition table: one row per scenario, generated by running `decide`.
pub(crate) fn transition_table() -> String {
    let mut out = String::from(
        "# HA transitions\n\n\
         Generated from `src/ha/testdata/*.txt` by running the pure policy `praetor::ha::decide::decide`\n\
         (regenerate with `UPDATE_TRANSITIONS=1 cargo test --lib ha::scenarios`). Each row is one HA cycle:\n\
         the state of the node and cluster, the event, the steps the policy asked the loop to perform\n\
         (with their outcome), the actions it returned, and the log line (Patroni's wording).\n",
    );
    let mut current_file = String::new();
    for case in all_cases() {
        if case.file != current_file {
            current_file = case.file.clone();
            out.push_str(&format!(
                "\n## {}\n\n| scenario | state | event | steps | actions | log line | Patroni |\n|---|---|---|---|---|---|---|\n",
                current_file.trim_end_matches(".txt")
            ));
        }
        let (_, run) = run_case(&case);
        let cell = |s: &str| if s.is_empty() { "-".to_string() } else { s.replace('|', "\\|") };
        let actions: Vec<String> = run.decision.actions.iter().map(|a| format!("`{a}`")).collect();
        let steps: Vec<String> = run.steps.iter().map(|s| format!("`{s}`")).collect();
        out.push_str(&format!(
            "| `{}` | {} | {} | {} | {} | {} | {} |\n",
            case.name,
            cell(&case.state),
            cell(&case.event),
            cell(&steps.join(" ")),
            cell(&actions.join(" ")),
            cell(&run.decision.log_line()),
            cell(&case.cite)
        ));
    }
    out
}

#[test]
fn every_scenario_in_testdata_holds() {
    let cases = all_cases();
    assert!(cases.len() > 20, "expected the scenario files to hold many cases");
    let mut names = std::collections::BTreeSet::new();
    let mut failures = Vec::new();
    for c in &cases {
        assert!(names.insert(c.name.clone()), "duplicate scenario name {}", c.name);
        assert!(!c.expected.is_empty(), "{}: no expected block", c.name);
        assert!(!c.cite.is_empty(), "{}: every scenario cites the Patroni function it mirrors", c.name);
        let (got, _) = run_case(c);
        if got != c.expected {
            failures.push(format!(
                "scenario {} ({}):\n--- expected ---\n{}--- got ---\n{}",
                c.name, c.file, c.expected, got
            ));
        }
    }
    assert!(failures.is_empty(), "{} scenario(s) differ:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn transition_table_in_docs_is_current() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/HA-TRANSITIONS.md");
    let table = transition_table();
    if std::env::var_os("UPDATE_TRANSITIONS").is_some() {
        std::fs::create_dir_all(path.parent().expect("docs dir")).expect("create docs/");
        std::fs::write(&path, &table).expect("write docs/HA-TRANSITIONS.md");
        return;
    }
    let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        on_disk == table,
        "docs/HA-TRANSITIONS.md is out of date; regenerate with UPDATE_TRANSITIONS=1 cargo test --lib ha::scenarios"
    );
}

/// One named `#[test]` per Patroni rule, each running the scenario of the same name.
macro_rules! scenarios {
    ($($name:ident),* $(,)?) => { $( #[test] fn $name() { run_named(stringify!($name)); } )* };
}

scenarios! {
    // §6.2 bootstrap
    first_node_with_bootstrap_section_races_for_initialize,
    lost_initialize_race_reports_failed_to_acquire_initialize_lock,
    node_without_bootstrap_section_waits_for_leader_to_bootstrap,
    nofailover_node_never_races_for_initialize,
    empty_node_clones_from_the_leader,
    empty_node_clones_from_a_running_clonefrom_replica,
    empty_node_waits_while_another_node_bootstraps,
    empty_node_uses_no_leader_replica_methods_without_a_leader,
    bootstrapped_node_runs_post_bootstrap_when_primary,
    post_bootstrap_done_writes_initialize_config_and_takes_the_lock,
    failed_bootstrap_cancels_initialize_and_exits,
    system_identifier_mismatch_refuses_to_join,
    system_identifier_mismatch_in_pause_releases_the_lock_and_stays,
    running_primary_adopts_its_sysid_when_initialize_is_missing,
    running_replica_without_initialize_key_aborts_start,
    leader_rewrites_a_missing_initialize_and_config,
    leader_with_empty_data_dir_releases_the_lock,
    unreadable_data_dir_is_reported,
    // §6.3 lock keeping and demotion timing
    leader_renews_the_lock_each_cycle,
    primary_demotes_at_once_when_lock_renewal_is_refused,
    replica_holding_the_lock_promotes,
    primary_demotes_when_dcs_unreachable_past_retry_timeout,
    watchdog_unusable_blocks_promotion_and_releases_the_lock,
    pre_promote_failure_releases_the_lock_and_backs_off,
    pre_promote_backoff_skips_the_race_for_ttl,
    leader_in_sync_mode_runs_the_sync_state_machine,
    leader_deletes_sync_key_when_sync_mode_turned_off,
    new_primary_refreshes_history_after_promotion,
    // §6.4 leader race
    replica_with_most_wal_takes_the_free_lock,
    replica_behind_another_replica_follows,
    lagging_replica_beyond_maximum_lag_on_failover_does_not_race,
    replica_does_not_race_while_primary_is_still_alive,
    equal_wal_lower_failover_priority_yields,
    former_leader_higher_priority_is_ignored,
    nofailover_replica_never_takes_the_lock,
    unreachable_and_nofailover_peers_do_not_vote,
    check_timeline_refuses_a_replica_behind_the_cluster_timeline,
    stale_primary_behind_cluster_timeline_does_not_retake_the_lock,
    restarted_primary_retakes_its_free_lock,
    lost_lock_race_follows_the_winner,
    sync_mode_only_sync_standbys_may_race,
    sync_mode_sync_standby_wins_although_former_leader_is_ahead,
    quorum_mode_needs_quorum_votes,
    quorum_mode_node_outside_voters_wins_with_enough_votes,
    failsafe_topology_excludes_unlisted_node_from_race,
    failsafe_ping_counts_as_a_leader,
    sync_mode_promotion_claims_sync_key_first,
    sync_mode_promotion_postponed_when_sync_key_changed,
    sync_mode_explicit_failover_to_a_candidate_outside_sync_key_takes_the_lock,
    // §6.5 manual switchover / failover
    leader_demotes_gracefully_for_switchover_to_healthy_candidate,
    leader_refuses_switchover_to_lagging_candidate_and_clears_key,
    leader_ignores_switchover_addressed_to_another_leader,
    leader_refuses_switchover_to_nofailover_candidate,
    leader_refuses_failover_to_candidate_behind_cluster_timeline,
    scheduled_switchover_waits_until_within_loop_wait,
    scheduled_switchover_due_soon_wakes_the_loop_in_time,
    scheduled_switchover_at_time_demotes,
    stale_scheduled_switchover_is_dropped,
    candidate_takes_the_lock_after_leader_stepped_down,
    other_replica_leaves_the_lock_to_a_healthy_candidate,
    other_replica_steps_in_when_candidate_is_unhealthy,
    former_leader_retakes_the_lock_when_nobody_else_is_healthy,
    new_leader_clears_failover_key_after_acquiring_lock,
    paused_cluster_refuses_switchover_without_candidate,
    paused_cluster_allows_candidate_switchover,
    paused_cluster_ignores_scheduled_switchover,
    sync_mode_leader_refuses_switchover_to_a_candidate_outside_sync_key,
    // §6.6 DCS unreachable
    replica_keeps_running_when_dcs_unreachable,
    failsafe_primary_keeps_running_when_all_members_accept,
    failsafe_primary_demotes_when_a_member_rejects,
    failsafe_primary_not_in_failsafe_key_demotes,
    paused_primary_is_not_demoted_when_dcs_unreachable,
    primary_demotes_when_lock_renewal_hits_dcs_error,
    // §6.7 crash recovery and primary_start_timeout
    crashed_primary_with_lock_starts_as_primary,
    crashed_primary_fails_over_at_once_with_zero_start_timeout,
    crashed_primary_with_zero_timeout_restarts_when_no_failover_possible,
    unclean_primary_without_lock_runs_crash_recovery,
    crashed_former_primary_follows_without_crash_recovery_when_its_wal_ends_at_the_fork,
    crashed_former_primary_with_wal_past_the_fork_runs_crash_recovery_then_rewind,
    crashed_former_primary_rewinds_after_crash_recovery,
    crashed_former_primary_runs_crash_recovery_when_its_wal_end_is_unknown,
    stopped_replica_starts_following_the_leader,
    replica_with_diverged_timeline_runs_pg_rewind,
    replica_with_diverged_timeline_reinitializes_when_rewind_impossible,
    rewind_success_lets_the_replica_start,
    stopped_replica_waits_while_the_leader_cannot_be_checked,
    stopped_replica_starts_when_the_check_cannot_tell,
    starting_primary_past_start_timeout_fails_over,
    starting_primary_within_start_timeout_keeps_waiting,
    starting_primary_past_timeout_keeps_waiting_without_failover_candidate,
    crash_recovery_past_start_timeout_is_terminated,
    failed_start_after_crash_releases_the_lock,
    leader_keeps_lock_during_long_action,
    promote_in_flight_is_cancelled_when_lock_is_lost,
    primary_losing_lock_during_restart_demotes,
    // §6.8 pause
    paused_leader_keeps_the_lock_without_touching_postgres,
    paused_replicas_do_not_race_for_a_free_lock,
    paused_primary_without_lock_grabs_a_free_lock,
    paused_primary_keeps_running_when_lock_renewal_fails,
    paused_leader_with_stopped_postgres_releases_the_lock,
    paused_stopped_replica_is_not_started,
    paused_leader_not_primary_releases_the_lock,
    // followers
    replica_follows_the_current_leader,
    replica_repoints_primary_conninfo_to_new_leader,
    replica_with_replicatefrom_cascades,
    primary_without_lock_demotes_when_another_node_leads,
    // §6.2 step 12 scheduled restart
    scheduled_restart_runs_when_due,
    scheduled_restart_waits_for_its_time,
    scheduled_restart_is_cancelled_when_postgres_already_restarted,
    scheduled_restart_with_unmet_role_filter_is_dropped,
}

#[test]
fn postgres_versions_compare_as_patroni_does() {
    // postgresql/misc.py postgres_version_to_int
    use super::decide::postgres_version_to_int;
    assert_eq!(postgres_version_to_int("15.4"), Some(150004));
    assert_eq!(postgres_version_to_int("9.6.3"), Some(90603));
    assert_eq!(postgres_version_to_int("10.0.1"), Some(100001));
    assert_eq!(postgres_version_to_int("9.6"), None);
    assert_eq!(postgres_version_to_int("15"), None);
    assert_eq!(postgres_version_to_int("x.1"), None);
}

fn case_from(name: &str, lines: &[&str]) -> Case {
    Case { name: name.into(), input: lines.iter().map(|l| l.to_string()).collect(), ..Default::default() }
}

#[test]
fn demotion_happens_before_the_lease_can_expire() {
    // docs/faq.rst: loop_wait + 2*retry_timeout <= ttl; ha.py _handle_dcs_error
    assert!(Timing::default().demotes_before_lease_expiry());
    let unsafe_timing = Timing { retry_timeout: Duration::from_secs(15), ..Timing::default() };
    assert!(!unsafe_timing.demotes_before_lease_expiry());

    // Worst case with the defaults (ttl 30, loop_wait 10, retry_timeout 10): the lock was renewed at
    // t0 = 990, so the lease lasts until 1020. The next cycle starts at 1000, its read takes the whole
    // retry_timeout, and the renewal fails after another retry_timeout, at 1020 = t0 + ttl at the latest.
    let t = Timing::default();
    let t0 = 990;
    let lease_end = t0 + t.ttl.as_secs();
    let renewal_fails_at = t0 + t.loop_wait.as_secs() + 2 * t.retry_timeout.as_secs();
    assert!(renewal_fails_at <= lease_end);
    let now = format!("now {renewal_fails_at}");
    let c = case_from(
        "renewal_fails_at_the_end_of_the_lease",
        &[
            "me pg0",
            "pg running primary",
            "dcs leader=pg0",
            "mem leader_until=1020 cb_called",
            "step update=dcs_error",
            &now,
        ],
    );
    let run = run_world(&c, &build(&c));
    assert_eq!(run.decision.actions, vec![super::action::Action::Demote(super::action::DemoteMode::Offline)]);
    assert!(!run.decision.next.is_leader(MonoTime::from_secs(renewal_fails_at)));

    // A read that fails outright (after retry_timeout) demotes one retry_timeout earlier.
    let c = case_from(
        "read_fails",
        &["me pg0", "pg running primary", "dcs down", "mem leader_until=1020", "now 1010"],
    );
    let run = run_world(&c, &build(&c));
    assert_eq!(run.decision.actions, vec![super::action::Action::Demote(super::action::DemoteMode::Offline)]);
}

#[test]
fn a_replica_never_demotes_or_promotes_when_the_dcs_is_down() {
    // ha.py _handle_dcs_error: only a running primary is demoted
    for pg in ["pg running replica", "pg stopped replica", "pg starting role=replica"] {
        let c = case_from("dcs_down", &["me pg1", pg, "dcs down", "policy failsafe"]);
        let run = run_world(&c, &build(&c));
        assert!(run.decision.actions.is_empty(), "{pg}: {:?}", run.decision.actions);
        assert_eq!(run.decision.log_line(), "DCS is not accessible");
    }
}

#[test]
fn each_step_is_requested_at_most_once_per_cycle() {
    // The loop calls decide at most 1 + number of step kinds times per cycle.
    for case in all_cases() {
        let (_, run) = run_case(&case);
        let mut kinds: Vec<String> =
            run.steps.iter().map(|s| s.split(['(', '=', '@']).next().unwrap_or("").to_string()).collect();
        let n = kinds.len();
        kinds.sort();
        kinds.dedup();
        assert_eq!(kinds.len(), n, "{}: a step was requested twice: {:?}", case.name, run.steps);
    }
}

#[test]
fn ha_sources_never_mention_the_runtime_or_clocks() {
    // STYLE.md §2: decide/failover must stay pure. Patterns are assembled so this file passes too.
    let forbidden = [
        ["tok", "io"].concat(),
        ["as", "ync"].concat(),
        ["Instant", "::now"].concat(),
        ["SystemTime", "::now"].concat(),
    ];
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/ha");
    let mut stack = vec![dir];
    let mut checked = 0;
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read src/ha") {
            let p = e.expect("dir entry").path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            // The loop (runner) and its executor do the I/O by design; everything else stays pure.
            if p.file_name().is_some_and(|n| {
                n == "runner.rs"
                    || n == "exec.rs"
                    || n == "sync_exec.rs"
                    || n == "fence_exec.rs"
                    || n == "command.rs"
            }) {
                continue;
            }
            let text = std::fs::read_to_string(&p).expect("read source");
            for f in &forbidden {
                assert!(!text.contains(f.as_str()), "{} mentions {f:?}", p.display());
            }
            checked += 1;
        }
    }
    assert!(checked >= 6, "expected to scan the ha sources, scanned {checked}");
}

#[test]
fn shutdown_stops_postgres_and_releases_the_key_unless_paused() {
    // ha.py Ha.shutdown
    use super::decide::{ShutdownPlan, shutdown_plan};
    let now = MonoTime::from_secs(1000);
    let leader = Memory { leader_until: Some(MonoTime::from_secs(1020)), ..Default::default() };
    let expired = Memory { leader_until: Some(MonoTime::from_secs(999)), ..Default::default() };
    let running = DynamicPolicy::default();
    let paused = DynamicPolicy { pause: true, ..DynamicPolicy::default() };
    assert_eq!(shutdown_plan(&running, &leader, now), ShutdownPlan::Stop { release_lock: true });
    assert_eq!(shutdown_plan(&running, &expired, now), ShutdownPlan::Stop { release_lock: false });
    assert_eq!(shutdown_plan(&running, &Memory::default(), now), ShutdownPlan::Stop { release_lock: false });
    assert_eq!(shutdown_plan(&paused, &leader, now), ShutdownPlan::LeaveRunning);
}

#[test]
fn safety_invariants_hold_over_a_grid_of_situations() {
    // Broad net under the named scenarios: thousands of combinations of PostgreSQL state, DCS
    // contents, policy, step outcomes, long actions and peer answers; every decision must keep the
    // split-brain and pause rules whatever the combination.
    let pgs = [
        "pg running primary lsn=5000 tl=1",
        "pg running replica lsn=5000 tl=1 upstream=pg1",
        "pg stopped role=primary control=in_production",
        "pg stopped replica control=shut_down_in_recovery",
        "pg starting role=primary",
        "pg crashed primary control=in_production",
        "pg stopped data=empty sysid=none",
    ];
    let dcss = [
        "dcs down",
        "dcs leader=pg1 optime=5000",
        "dcs leader=pg0 optime=5000",
        "dcs optime=5000",
        "dcs leader=pg0 optime=5000 failover=pg0>pg1",
        "dcs leader=pg1 optime=5000 failover=pg1>pg0",
        "dcs optime=5000 failover=pg1>pg0",
        "dcs optime=5000 failover=pg1>pg2",
        "dcs leader=pg1 optime=5000 sync=pg1:pg2",
        "dcs optime=5000 sync=pg1:pg0,pg2",
        "dcs optime=5000 initialize=none",
    ];
    let policies = [
        "policy max_lag=1048576",
        "policy pause",
        "policy failsafe",
        "policy sync=on",
        "policy pause failsafe",
    ];
    let outcomes = [
        "step acquire=done update=done initialize=done sync_prepromote=done failsafe=accepted rewind=not_needed",
        "step acquire=refused update=refused initialize=refused sync_prepromote=refused failsafe=rejected rewind=needed",
        "step acquire=dcs_error update=dcs_error initialize=dcs_error sync_prepromote=dcs_error failsafe=rejected rewind=unknown",
    ];
    let inflights = ["", "inflight promote", "inflight restart"];
    let peers = ["peer pg1 replica lsn=5000", "peer pg1 primary", "peer pg1 unreachable"];
    let mut checked = 0;
    for pg in pgs {
        for dcs in dcss {
            for policy in policies {
                for outcome in outcomes {
                    for inflight in inflights {
                        for peer in peers {
                            let mut lines = vec![
                                "me pg0 bootstrap",
                                pg,
                                dcs,
                                policy,
                                outcome,
                                peer,
                                "peer pg2 replica lsn=4000",
                                "mem old=pg1:pg0,pg1,pg2 leader_until=1020 failsafe=pg0,pg1,pg2 cb_called",
                            ];
                            if !dcs.ends_with("down") {
                                lines.push("member pg1 replica");
                                lines.push("member pg2 replica");
                            }
                            if !inflight.is_empty() {
                                lines.push(inflight);
                            }
                            let c = case_from("grid", &lines);
                            let w = build(&c);
                            let run = run_world(&c, &w);
                            let again = run_world(&c, &w);
                            let ctx = format!(
                                "{lines:?}\n-> steps {:?} actions {:?}",
                                run.steps, run.decision.actions
                            );
                            assert_eq!(run.decision, again.decision, "decide is not deterministic: {ctx}");
                            check_invariants(&w, &run, &ctx);
                            checked += 1;
                        }
                    }
                }
            }
        }
    }
    assert_eq!(
        checked,
        pgs.len() * dcss.len() * policies.len() * outcomes.len() * inflights.len() * peers.len()
    );
}

fn check_invariants(w: &World, run: &Run, ctx: &str) {
    use super::action::{Action, DemoteMode};
    let acts = &run.decision.actions;
    let has = |f: &dyn Fn(&Action) -> bool| acts.iter().any(f);
    let promote = has(&|a| *a == Action::Promote);
    let demote = has(&|a| matches!(a, Action::Demote(_)));
    let lock_at_start =
        w.cluster.as_ref().is_ok_and(|c| c.leader.as_ref().is_some_and(|l| l.name == w.me.name));
    let renewed = run.steps.iter().any(|s| s.starts_with("UpdateLock") && s.ends_with("=done"));
    let acquired = run.steps.iter().any(|s| s == "AcquireLock=done");
    let candidate_is_me = w
        .cluster
        .as_ref()
        .is_ok_and(|c| c.failover.as_ref().is_some_and(|f| f.member.as_deref() == Some(w.me.name.as_str())));

    assert!(!(promote && demote), "promote and demote together: {ctx}");
    assert!(
        !promote || renewed || acquired,
        "promoted without holding a freshly renewed/acquired lock: {ctx}"
    );
    if has(&|a| matches!(a, Action::ReleaseLock { .. })) {
        assert!(lock_at_start || acquired, "released a lock it does not hold: {ctx}");
    }
    assert!(!has(&|a| *a == Action::TakeLock), "took the lock outside bootstrap: {ctx}");
    if has(&|a| matches!(a, Action::Demote(m) if *m != DemoteMode::Graceful)) {
        assert!(w.pg.role == Role::Primary || w.pg.is_primary(), "demoted a node that is not primary: {ctx}");
    }
    if has(&|a| *a == Action::Demote(DemoteMode::Graceful)) {
        // Patroni hands a switchover over even from a lock holder that has not promoted yet.
        assert!(renewed, "switchover demotion without holding the lock: {ctx}");
    }
    if w.policy.pause {
        assert!(
            !promote || candidate_is_me,
            "paused cluster promoted a replica that is not the candidate: {ctx}"
        );
        assert!(
            !has(&|a| matches!(a, Action::Demote(m) if *m != DemoteMode::Graceful)),
            "paused cluster demoted: {ctx}"
        );
    }
    if w.cluster.is_err() {
        assert!(
            acts.iter().all(|a| matches!(a, Action::Demote(DemoteMode::Offline) | Action::KeepaliveWatchdog)),
            "DCS down: only an offline demotion or a failsafe keepalive is allowed: {ctx}"
        );
        let failsafe_kept = w.policy.failsafe_mode && run.steps.iter().any(|s| s.ends_with("=accepted"));
        if w.pg.is_primary() && !w.policy.pause && !failsafe_kept {
            assert!(
                has(&|a| *a == Action::Demote(DemoteMode::Offline)),
                "primary kept running without DCS: {ctx}"
            );
        }
    }
    if run.steps.iter().any(|s| s.ends_with("=dcs_error")) {
        assert!(!promote, "promoted after a DCS error: {ctx}");
    }
    if run.decision.next.is_leader(w.now) {
        assert!(renewed || acquired || w.cluster.is_err(), "believes it leads without a lock write: {ctx}");
    }
}
