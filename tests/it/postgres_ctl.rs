//! The PostgreSQL controller against real PostgreSQL 15: lifecycle, crash detection, replicas
//! through slots, promote + rewind, custom replica methods, observation of a frozen server.

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use praetor::postgres::slots::{IgnoreSlot, SlotInputs, SlotSpec};
use praetor::postgres::{
    ConfRole, PgError, Postgres, ProcessState, SqlState, StartOutcome, StopMode, StopOutcome, Upstream,
    postmaster, replica::CloneSource, rewind::RewindOutcome,
};
use tokio_util::sync::CancellationToken;

use crate::require_pg;
use crate::support::postgres::PgCluster;
use crate::support::{FrozenPostgres, wait_for};

async fn query_strings(pg: &Postgres, sql: &str) -> Vec<String> {
    let c = pg.connect().await.expect("connect");
    c.query(sql, &[])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .iter()
        .map(|r| r.get::<_, String>(0))
        .collect()
}

async fn exec(pg: &Postgres, sql: &str) {
    let c = pg.connect().await.expect("connect");
    c.batch_execute(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
}

fn source_of(pg: &Postgres) -> CloneSource {
    let (host, port) = pg.settings().connect_host_port();
    CloneSource { host, port, dbname: None }
}

fn replica_of(pg: &Postgres, slot: &str) -> ConfRole {
    let (host, port) = pg.settings().connect_host_port();
    ConfRole::Replica { upstream: Some(Upstream { host, port, slot: Some(slot.to_string()) }) }
}

fn member_slots(me: &str, members: &[&str]) -> SlotInputs {
    SlotInputs {
        me: me.into(),
        use_slots: true,
        present_members: members.iter().map(|m| m.to_string()).collect(),
        member_slots_ttl: Duration::from_secs(1800),
        ..Default::default()
    }
}

/// Wait until `primary` shows a streaming row for `app` whose replay LSN equals its flush LSN
/// and `replica` replayed that far; returns that LSN's observations.
async fn wait_caught_up(primary: &Postgres, replica: &Postgres, app: &str) {
    let ok = wait_for(Duration::from_secs(30), || async {
        let p = primary.observe().await;
        let r = replica.observe().await;
        let (Some(pf), Some(rf)) = (p.facts(), r.facts()) else { return false };
        let Some(row) = pf.replication.iter().find(|x| x.application_name == app) else { return false };
        row.state.as_deref() == Some("streaming")
            && pf.flush_lsn.is_some()
            && row.replay_lsn == pf.flush_lsn
            && rf.replay_lsn == pf.flush_lsn
    })
    .await;
    assert!(
        ok,
        "replica {app} did not catch up: primary {:?} replica {:?}",
        primary.observe().await,
        replica.observe().await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle_initdb_start_observe_stop_in_each_mode_and_find_running_postmaster() {
    let bin = require_pg!();
    let mut cl = PgCluster::new("pg-lifecycle", bin);
    let mut s = cl.node("alpha");
    // Parameters the installed server would refuse are left out instead of breaking the start.
    s.parameters.insert("praetor_no_such_setting".into(), serde_json::json!("1"));
    s.parameters.insert("work_mem".into(), serde_json::json!("lots"));
    s.parameters.insert("max_connections".into(), serde_json::json!(7)); // local cmdline value: ignored
    let pg = cl.controller(&s);
    let cancel = CancellationToken::new();

    let started = pg.bootstrap(&cancel).await.expect("bootstrap");
    let StartOutcome::Started { pid } = started else { panic!("expected a fresh start, got {started:?}") };

    // Observe the primary.
    let obs = pg.observe().await;
    assert!(matches!(&obs.process, ProcessState::Running(p) if p.pid == pid), "{obs:?}");
    let f = obs.facts().unwrap_or_else(|| panic!("no SQL facts: {obs:?}"));
    assert!(!f.in_recovery);
    assert_eq!(f.timeline, Some(1));
    assert!(f.server_version >= 150000 && f.server_version < 160000);
    assert!(f.write_lsn.is_some() && f.flush_lsn.is_some());
    assert!(f.replication.is_empty() && f.wal_receiver.is_none());
    let cd = pg.controldata().await.expect("pg_controldata");
    assert_eq!(cd.system_identifier(), Some(f.system_identifier.as_str()));
    assert_eq!(cd.cluster_state(), Some("in production"));

    // Files as Patroni manages them.
    let data = s.data_dir.clone();
    let conf = std::fs::read_to_string(data.join("postgresql.conf")).unwrap();
    assert!(conf.contains("include 'postgresql.base.conf'"), "{conf}");
    assert!(data.join("postgresql.base.conf").is_file());
    assert!(!conf.contains("praetor_no_such_setting") && !conf.contains("work_mem"), "{conf}");
    assert!(conf.contains("max_connections = '100'"), "{conf}");
    assert!(std::fs::read_to_string(data.join("pg_hba.conf")).unwrap().contains("scram-sha-256"));
    assert_eq!(std::fs::metadata(&s.pgpass).unwrap().permissions().mode() & 0o777, 0o600);
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
    assert!(cmdline.contains("--cluster_name=pgtest") && cmdline.contains("--wal_log_hints=on"), "{cmdline}");
    // Roles from postgresql.authentication, the rewind role with its function grants.
    let roles = query_strings(&pg, "SELECT rolname::text FROM pg_roles WHERE rolname IN ('replicator','rewinder') AND rolcanlogin ORDER BY 1").await;
    assert_eq!(roles, vec!["replicator", "rewinder"]);
    let grant = query_strings(
        &pg,
        "SELECT has_function_privilege('rewinder', 'pg_catalog.pg_read_binary_file(text)', 'execute')::text",
    )
    .await;
    assert_eq!(grant, vec!["true"]);

    // A new controller finds the running postmaster instead of starting a second one.
    drop(pg);
    let pg = cl.controller(&s);
    assert_eq!(pg.start(&ConfRole::Primary).await.unwrap(), StartOutcome::AlreadyRunning { pid });

    // Slots: member slots, a permanent slot, ignore_slots left alone, absent member dropped after ttl.
    exec(&pg, "SELECT pg_create_physical_replication_slot('external_tool')").await;
    let mut inp = member_slots("alpha", &["alpha", "beta", "gamma-1"]);
    inp.permanent = vec![SlotSpec::physical("archiver")];
    inp.ignore = vec![IgnoreSlot { name: Some("external_tool".into()), ..Default::default() }];
    pg.sync_slots(&inp).await.expect("sync slots");
    let names = query_strings(&pg, "SELECT slot_name::text FROM pg_replication_slots ORDER BY 1").await;
    assert_eq!(names, vec!["archiver", "beta", "external_tool", "gamma_1"]);
    inp.present_members = vec!["alpha".into(), "beta".into()];
    inp.absent_members = vec![("gamma-1".into(), Duration::from_secs(1801))];
    pg.sync_slots(&inp).await.expect("sync slots");
    let names = query_strings(&pg, "SELECT slot_name::text FROM pg_replication_slots ORDER BY 1").await;
    assert_eq!(names, vec!["archiver", "beta", "external_tool"]);

    // A smart stop waits for clients; pg_ctl_timeout bounds the wait and the server keeps running.
    let client = pg.connect().await.unwrap();
    let t = Instant::now();
    let r = pg.stop_with_timeout(StopMode::Smart, Duration::from_secs(1)).await;
    assert!(matches!(r, Err(PgError::StopTimeout { .. })), "{r:?}");
    assert!(t.elapsed() < Duration::from_secs(5));
    drop(client);

    // Stop in each mode, start again each time.
    for mode in [StopMode::Smart, StopMode::Fast, StopMode::Immediate] {
        let t = Instant::now();
        assert_eq!(pg.stop(mode).await.unwrap(), StopOutcome::Stopped, "{mode:?}");
        assert!(t.elapsed() < Duration::from_secs(20));
        assert_eq!(pg.observe().await.process, ProcessState::Stopped);
        let state = pg.controldata().await.unwrap().cluster_state().map(str::to_string);
        if mode == StopMode::Immediate {
            assert_eq!(state.as_deref(), Some("in production"), "immediate stop skips the checkpoint");
        } else {
            assert_eq!(state.as_deref(), Some("shut down"));
        }
        assert_eq!(pg.stop(mode).await.unwrap(), StopOutcome::NotRunning);
        assert!(matches!(pg.start(&ConfRole::Primary).await.unwrap(), StartOutcome::Started { .. }));
        assert!(pg.observe().await.is_primary());
    }

    // Reload applies a changed parameter without a restart.
    let mut s2 = s.clone();
    s2.parameters.insert("work_mem".into(), serde_json::json!("7MB"));
    let mut pg = pg;
    pg.set_settings(s2);
    pg.reload(&ConfRole::Primary).await.expect("reload");
    let ok = wait_for(Duration::from_secs(10), || async {
        query_strings(&pg, "SELECT current_setting('work_mem')").await == vec!["7MB"]
    })
    .await;
    assert!(ok, "work_mem was not reloaded");
    // A postmaster-context change is reported as pending a restart.
    let mut s3 = pg.settings().clone();
    s3.parameters.insert("shared_buffers".into(), serde_json::json!("24MB"));
    pg.set_settings(s3);
    pg.reload(&ConfRole::Primary).await.expect("reload");
    let ok = wait_for(Duration::from_secs(10), || async {
        pg.observe().await.facts().is_some_and(|f| f.pending_restart == vec!["shared_buffers".to_string()])
    })
    .await;
    assert!(ok, "shared_buffers not pending restart: {:?}", pg.observe().await);

    // The bin dir layout of the installed version is found.
    assert_eq!(
        praetor::postgres::bin_dir::detect(Some(15)),
        Some(std::path::PathBuf::from(crate::support::postgres::PG_BIN_DIR))
    );
    assert!(praetor::postgres::bin_dir::detect(None).is_some());

    // A killed postmaster is reported as crashed, and the next start recovers.
    let pid = match pg.observe().await.process {
        ProcessState::Running(p) => p.pid,
        other => panic!("not running: {other:?}"),
    };
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL).unwrap();
    assert!(postmaster::wait_gone(pid, Duration::from_secs(10)).await);
    assert!(matches!(pg.observe().await.process, ProcessState::Crashed(p) if p.pid == pid));
    assert_eq!(pg.stop(StopMode::Fast).await.unwrap(), StopOutcome::WasCrashed);
    // Orphaned backends notice the postmaster's death and exit; then the start succeeds.
    let mut started = false;
    for _ in 0..20 {
        match pg.start(&ConfRole::Primary).await {
            Ok(_) => {
                started = true;
                break;
            }
            Err(PgError::StartFailed { .. }) => tokio::time::sleep(Duration::from_millis(500)).await,
            Err(e) => panic!("start after crash: {e}"),
        }
    }
    assert!(started, "no start after the crash");
    assert!(pg.observe().await.is_primary());
    pg.stop(StopMode::Fast).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replica_streams_through_its_slot_then_promotion_and_rewind_of_the_old_primary() {
    let bin = require_pg!();
    let mut cl = PgCluster::new("pg-replication", bin);
    let sa = cl.node("node-a");
    let sb = cl.node("node-b");
    let a = cl.controller(&sa);
    let b = cl.controller(&sb);
    let cancel = CancellationToken::new();

    a.bootstrap(&cancel).await.expect("bootstrap a");
    exec(&a, "CREATE TABLE t (v text); INSERT INTO t VALUES ('before')").await;
    a.sync_slots(&member_slots("node-a", &["node-a", "node-b"])).await.unwrap();

    // Clone with pg_basebackup and stream through the slot named after the member.
    let method = b.create_replica(Some(&source_of(&a)), &cancel).await.expect("basebackup");
    assert_eq!(method, "basebackup");
    b.start(&replica_of(&a, "node_b")).await.expect("start replica");
    wait_caught_up(&a, &b, "node-b").await;
    let ao = a.observe().await;
    let bo = b.observe().await;
    let (af, bf) = (ao.facts().unwrap(), bo.facts().unwrap());
    assert!(bf.in_recovery && bf.timeline == Some(1));
    assert_eq!(bf.system_identifier, af.system_identifier);
    let wr = bf.wal_receiver.as_ref().expect("wal receiver");
    assert_eq!(wr.status, "streaming");
    assert_eq!(wr.slot_name.as_deref(), Some("node_b"));
    let slot_active =
        query_strings(&a, "SELECT active::text FROM pg_replication_slots WHERE slot_name = 'node_b'").await;
    assert_eq!(slot_active, vec!["true"]);
    assert!(
        std::fs::read_to_string(sb.data_dir.join("postgresql.conf"))
            .unwrap()
            .contains("application_name=node-b")
    );

    // Promote b, write on it; a keeps writing on the old timeline (diverges), then stops.
    b.promote().await.expect("promote");
    let ok = wait_for(Duration::from_secs(20), || async { b.observe().await.is_primary() }).await;
    assert!(ok, "b did not become primary");
    assert!(!sb.data_dir.join("standby.signal").exists());
    exec(&b, "INSERT INTO t VALUES ('after promotion')").await;
    b.checkpoint().await.expect("checkpoint after promote");
    assert_eq!(b.observe().await.facts().unwrap().timeline, Some(2));
    exec(&a, "INSERT INTO t VALUES ('lost on the old timeline'); SELECT pg_switch_wal()").await;
    // The old primary goes down hard: no shutdown checkpoint.
    assert_eq!(a.stop(StopMode::Immediate).await.unwrap(), StopOutcome::Stopped);
    assert_eq!(a.controldata().await.unwrap().cluster_state(), Some("in production"));
    // The end of its WAL (pg_waldump, no crash recovery yet) is past b's fork point: rewind.
    assert_eq!(a.rewind_needed(&source_of(&b)).await.expect("rewind check"), Some(true));
    assert!(a.ensure_clean_shutdown(&cancel).await.expect("single-user crash recovery"));
    assert!(a.controldata().await.unwrap().clean_shutdown());
    assert!(!a.ensure_clean_shutdown(&cancel).await.unwrap(), "second run has nothing to do");

    // The old primary needs a rewind, gets it, and follows b through its own slot.
    assert_eq!(a.rewind_needed(&source_of(&b)).await.expect("rewind check"), Some(true));
    assert_eq!(a.rewind(&source_of(&b), &cancel).await.expect("rewind"), RewindOutcome::Rewound);
    b.sync_slots(&member_slots("node-b", &["node-a", "node-b"])).await.unwrap();
    a.start(&replica_of(&b, "node_a")).await.expect("start rewound a as replica");
    wait_caught_up(&b, &a, "node-a").await;
    let rows = query_strings(&a, "SELECT v FROM t ORDER BY v").await;
    assert_eq!(rows, vec!["after promotion", "before"]);
    assert_eq!(a.observe().await.facts().unwrap().timeline, Some(2));
    // Following now needs nothing more.
    assert_eq!(a.rewind_needed(&source_of(&b)).await.unwrap(), Some(false));
    let ConfRole::Replica { upstream } = replica_of(&b, "node_a") else { unreachable!() };
    assert!(matches!(a.follow(upstream.clone()).await.unwrap(), StartOutcome::AlreadyRunning { .. }));
    assert!(matches!(b.follow(upstream).await, Err(PgError::Invalid { .. })), "a primary must not follow");

    // b crashes after a received all its WAL; a is promoted. b's WAL ends where a's timeline 3
    // forks off: b follows a as it is, without crash recovery or pg_rewind.
    exec(&b, "INSERT INTO t VALUES ('streamed before the crash')").await;
    wait_caught_up(&b, &a, "node-a").await;
    assert_eq!(b.stop(StopMode::Immediate).await.unwrap(), StopOutcome::Stopped);
    assert_eq!(b.controldata().await.unwrap().cluster_state(), Some("in production"));
    a.promote().await.expect("promote a");
    let ok = wait_for(Duration::from_secs(20), || async { a.observe().await.is_primary() }).await;
    assert!(ok, "a did not become primary");
    a.checkpoint().await.expect("checkpoint after promote");
    assert_eq!(b.rewind_needed(&source_of(&a)).await.expect("rewind check"), Some(false));
    a.sync_slots(&member_slots("node-a", &["node-a", "node-b"])).await.unwrap();
    b.start(&replica_of(&a, "node_b")).await.expect("start crashed b as a replica of a");
    exec(&a, "INSERT INTO t VALUES ('on timeline 3')").await;
    wait_caught_up(&a, &b, "node-b").await;
    assert_eq!(b.observe().await.facts().unwrap().timeline, Some(3));
    let rows = query_strings(&b, "SELECT v FROM t ORDER BY v").await;
    assert_eq!(rows, vec!["after promotion", "before", "on timeline 3", "streamed before the crash"]);
    a.stop(StopMode::Fast).await.unwrap();
    b.stop(StopMode::Fast).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_replica_method_is_used_first_and_a_failing_one_falls_through_to_basebackup() {
    let bin = require_pg!();
    let mut cl = PgCluster::new("pg-methods", bin.clone());
    let sa = cl.node("primary");
    let a = cl.controller(&sa);
    let cancel = CancellationToken::new();
    a.bootstrap(&cancel).await.expect("bootstrap");

    // A custom method that copies with pg_basebackup itself and leaves a marker.
    let copy = cl.script(
        "copy_method.sh",
        &format!(
            "for a in \"$@\"; do case \"$a\" in --datadir=*) D=\"${{a#--datadir=}}\";; --connstring=*) C=\"${{a#--connstring=}}\";; esac; done\n\
             {}/pg_basebackup -D \"$D\" -d \"$C\" -X stream || exit 1\n\
             echo \"$@\" > \"$D/custom_method_args\"",
            bin.display()
        ),
    );
    let broken = cl.script(
        "broken_method.sh",
        "for a in \"$@\"; do case \"$a\" in --datadir=*) D=\"${a#--datadir=}\";; esac; done\n\
         echo junk > \"$D/half_written\"; exit 3",
    );

    let mut sb = cl.node("clone");
    sb.create_replica_methods = vec!["copy".into(), "basebackup".into()];
    sb.replica_methods.insert(
        "copy".into(),
        praetor::postgres::settings::ReplicaMethod {
            command: Some(copy.display().to_string()),
            extra: [("flavour".to_string(), serde_json::json!("vanilla"))].into_iter().collect(),
            ..Default::default()
        },
    );
    sb.replica_methods.insert(
        "broken".into(),
        praetor::postgres::settings::ReplicaMethod {
            command: Some(broken.display().to_string()),
            ..Default::default()
        },
    );
    let b = cl.controller(&sb);
    assert_eq!(b.create_replica(Some(&source_of(&a)), &cancel).await.unwrap(), "copy");
    let args = std::fs::read_to_string(sb.data_dir.join("custom_method_args")).unwrap();
    assert!(
        args.contains("--scope=pgtest")
            && args.contains("--role=replica")
            && args.contains("--flavour=vanilla"),
        "{args}"
    );
    assert!(sb.data_dir.join("PG_VERSION").is_file());

    // The failing method comes first: its junk is removed and basebackup makes the replica.
    let mut sc = sb.clone();
    sc.create_replica_methods = vec!["broken".into(), "basebackup".into()];
    let c = cl.controller(&sc);
    a.sync_slots(&member_slots("primary", &["primary", "clone"])).await.unwrap();
    assert_eq!(c.create_replica(Some(&source_of(&a)), &cancel).await.unwrap(), "basebackup");
    assert!(!sc.data_dir.join("half_written").exists());
    assert!(!sc.data_dir.join("custom_method_args").exists());
    assert!(sc.data_dir.join("PG_VERSION").is_file());
    c.start(&replica_of(&a, "clone")).await.expect("start the clone");
    assert!(c.observe().await.facts().is_some_and(|f| f.in_recovery));
    c.stop(StopMode::Fast).await.unwrap();

    // Only a failing method: an error and an empty data directory.
    let mut sd = sc.clone();
    sd.create_replica_methods = vec!["broken".into()];
    let d = cl.controller(&sd);
    assert!(matches!(d.create_replica(Some(&source_of(&a)), &cancel).await, Err(PgError::ReplicaFailed(_))));
    assert!(d.data_directory_empty());
    a.stop(StopMode::Fast).await.unwrap();
}

/// SIGCONTs a process on drop, so a failing test never leaves a frozen postmaster behind.
struct Thaw(i32);
impl Drop for Thaw {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.0), nix::sys::signal::Signal::SIGCONT);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn observation_returns_within_its_timeout_while_the_postmaster_is_sigstopped() {
    let bin = require_pg!();
    let mut cl = PgCluster::new("pg-frozen", bin);
    let mut s = cl.node("frozen");
    s.observe_timeout = Duration::from_secs(1);
    // Observe over TCP as well as the socket: both must time out.
    let pg = cl.controller(&s);
    pg.bootstrap(&CancellationToken::new()).await.expect("bootstrap");
    let pid = match pg.observe().await.process {
        ProcessState::Running(p) => p.pid,
        other => panic!("not running: {other:?}"),
    };
    let _thaw = Thaw(pid);
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGSTOP).unwrap();
    for use_socket in [true, false] {
        let mut s2 = s.clone();
        s2.use_unix_socket = use_socket;
        let frozen = cl.controller(&s2);
        let t = Instant::now();
        let obs = frozen.observe().await;
        assert!(t.elapsed() < Duration::from_secs(3), "observation took {:?}", t.elapsed());
        assert!(matches!(obs.process, ProcessState::Running(_)));
        assert_eq!(obs.sql, SqlState::Timeout, "socket={use_socket}");
    }
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGCONT).unwrap();
    let ok = wait_for(Duration::from_secs(10), || async { pg.observe().await.is_primary() }).await;
    assert!(ok, "server did not answer after SIGCONT");
    pg.stop(StopMode::Fast).await.unwrap();
}

/// The backend pid behind the controller's persistent connection.
async fn session_backend(pg: &Postgres) -> Result<i32, PgError> {
    pg.with_client("backend pid", async |c| {
        let r = c
            .query_one("SELECT pg_catalog.pg_backend_pid()", &[])
            .await
            .map_err(|e| PgError::Sql { op: "backend pid", msg: e.to_string() })?;
        Ok(r.get::<_, i32>(0))
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persistent_connection_is_reused_reopened_after_a_restart_and_bounded_while_frozen() {
    let bin = require_pg!();
    let mut cl = PgCluster::new("pg-session", bin);
    let mut s = cl.node("session");
    s.observe_timeout = Duration::from_secs(1);
    let pg = cl.controller(&s);
    pg.bootstrap(&CancellationToken::new()).await.expect("bootstrap");

    // Observations and other queries share one connection.
    for _ in 0..5 {
        assert!(pg.observe().await.is_primary());
    }
    let backend = session_backend(&pg).await.expect("backend pid");
    assert_eq!(session_backend(&pg).await.expect("backend pid"), backend);
    let opened = pg.session().opened();
    assert_eq!(opened, 1, "one connection for every observation and query");

    // After a restart the first observation already succeeds, on a new connection.
    pg.restart(StopMode::Fast, &ConfRole::Primary).await.expect("restart");
    assert!(pg.observe().await.is_primary(), "first observation after the restart failed");
    assert_ne!(session_backend(&pg).await.expect("backend pid"), backend);
    assert_eq!(pg.session().opened(), opened + 1);

    // Frozen server (postmaster and backends): every use returns within its bound.
    let pid = match pg.observe().await.process {
        ProcessState::Running(p) => p.pid,
        other => panic!("not running: {other:?}"),
    };
    let frozen = FrozenPostgres::freeze(pid);
    for _ in 0..2 {
        let t = Instant::now();
        assert_eq!(pg.observe().await.sql, SqlState::Timeout);
        assert!(t.elapsed() < Duration::from_secs(3), "observation took {:?}", t.elapsed());
        let t = Instant::now();
        assert!(session_backend(&pg).await.is_err());
        assert!(t.elapsed() < Duration::from_secs(3), "query took {:?}", t.elapsed());
    }
    drop(frozen);
    let ok = wait_for(Duration::from_secs(10), || async { pg.observe().await.is_primary() }).await;
    assert!(ok, "no observation after SIGCONT");
    pg.stop(StopMode::Fast).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_bootstrap_script_and_post_bootstrap_get_patroni_arguments() {
    let bin = require_pg!();
    let mut cl = PgCluster::new("pg-custom-bootstrap", bin.clone());
    let mut s = cl.node("custom");
    let out = cl.dir.join("out");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o777)).unwrap();
    // bootstrap.py: _custom_bootstrap passes --scope, --datadir and extra keys as --k=v.
    let boot = cl.script(
        "my_bootstrap.sh",
        &format!(
            "echo \"$@\" > {out}/bootstrap_args\n\
             for a in \"$@\"; do case \"$a\" in --datadir=*) D=\"${{a#--datadir=}}\";; esac; done\n\
             {bin}/initdb -D \"$D\" -U postgres --auth-local=trust --auth-host=trust >/dev/null || exit 1\n\
             touch \"$D/promote\"",
            out = out.display(),
            bin = bin.display()
        ),
    );
    // bootstrap.py: call_post_bootstrap passes a superuser URL with PGPASSFILE set.
    let post = cl.script(
        "post_bootstrap.sh",
        &format!(
            "echo \"$1\" > {out}/post_url\n\
             echo \"$PGPASSFILE\" > {out}/post_pgpassfile\n\
             {bin}/psql \"$1\" -qc 'CREATE TABLE made_by_post_bootstrap ()' || exit 1",
            out = out.display(),
            bin = bin.display()
        ),
    );
    s.bootstrap.method = Some("my_method".into());
    s.bootstrap.custom.insert(
        "my_method".into(),
        praetor::postgres::settings::CustomBootstrap {
            command: boot.display().to_string(),
            extra: [("label".to_string(), serde_json::json!("nightly"))].into_iter().collect(),
            ..Default::default()
        },
    );
    s.bootstrap.post_bootstrap = Some(post.display().to_string());
    s.bootstrap.users.insert(
        "appuser".into(),
        praetor::postgres::settings::BootstrapUser {
            password: Some(praetor::types::Secret("app".into())),
            options: vec!["createdb".into()],
        },
    );
    let pg = cl.controller(&s);
    pg.bootstrap(&CancellationToken::new()).await.expect("custom bootstrap");

    let args = std::fs::read_to_string(out.join("bootstrap_args")).unwrap();
    assert!(
        args.contains("--scope=pgtest") && args.contains(&format!("--datadir={}", s.data_dir.display())),
        "{args}"
    );
    assert!(args.contains("--label=nightly"), "{args}");
    assert!(!s.data_dir.join("promote").exists(), "a leftover trigger file must be removed");
    let url = std::fs::read_to_string(out.join("post_url")).unwrap();
    assert!(url.starts_with("postgres://postgres@%2F") && url.trim_end().ends_with("/postgres"), "{url}");
    assert_eq!(
        std::fs::read_to_string(out.join("post_pgpassfile")).unwrap().trim(),
        s.pgpass.display().to_string()
    );
    let made =
        query_strings(&pg, "SELECT relname::text FROM pg_class WHERE relname = 'made_by_post_bootstrap'")
            .await;
    assert_eq!(made.len(), 1);
    let app = query_strings(&pg, "SELECT rolcreatedb::text FROM pg_roles WHERE rolname = 'appuser'").await;
    assert_eq!(app, vec!["true"]);
    // The superuser got its password from postgresql.authentication: scram over TCP works.
    let mut tcp = s.clone();
    tcp.use_unix_socket = false;
    let via_tcp = cl.controller(&tcp);
    assert!(via_tcp.observe().await.is_primary());
    pg.stop(StopMode::Fast).await.unwrap();
}
