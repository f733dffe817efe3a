//! The Consul backend against the Consul API model: Patroni's key layout and session as seen over
//! plain HTTP, session loss and re-creation, `SessionTTLMin` adoption, retries, consistency, ACL
//! token and datacenter, and service registration. The generic behaviour is in the DCS contract
//! suite (`dcs_contract::consul`).

use crate::dcs_contract::{params, unique_scope};
use crate::support::consul::{connect, fast_options, section, start_model};
use consul_api_server::{Fault, Options};
use praetor::config::dcs::{ConsulConfig, DcsSection};
use praetor::dcs::DcsError;
use serde_json::{Value, json};
use std::time::Duration;

const MEMBER: &str = r#"{"conn_url":"postgres://127.0.0.1:5433/postgres","api_url":"http://127.0.0.1:8009/patroni","state":"running","role":"primary","version":"4.1.5","xlog_location":50615840,"timeline":1}"#;

async fn get_json(url: &str) -> (u16, Option<u64>, Value) {
    let r = reqwest::get(url).await.expect("GET");
    let status = r.status().as_u16();
    let index = r.headers().get("x-consul-index").and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok());
    let body = r.text().await.expect("body");
    (status, index, serde_json::from_str(&body).unwrap_or(Value::Null))
}

fn b64(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(s)
}

// P:dcs/consul.py: keys without the leading `/`; `leader` and `members/<name>` acquired by the session.
#[tokio::test]
async fn leader_and_member_keys_have_patronis_layout_and_carry_the_session() {
    crate::support::init_logging();
    let server = start_model(Options::default()).await;
    let scope = unique_scope("layout");
    let c = connect(&section(&server.url()), params(&scope, "pg0", Duration::from_secs(30))).await;
    assert!(c.touch_member(MEMBER).await.unwrap());
    assert!(c.attempt_to_acquire_leader().await.unwrap());
    assert!(c.initialize(true, "").await.unwrap());

    let (status, index, list) = get_json(&format!("{}/v1/kv/service/{scope}/?recurse", server.url())).await;
    assert_eq!(status, 200);
    let list = list.as_array().expect("a JSON list").clone();
    let keys: Vec<&str> = list.iter().map(|e| e["Key"].as_str().unwrap()).collect();
    assert_eq!(
        keys,
        [
            format!("service/{scope}/initialize"),
            format!("service/{scope}/leader"),
            format!("service/{scope}/members/pg0")
        ]
    );
    let sessions = server.sessions();
    assert_eq!(sessions.len(), 1, "one session per agent");
    let sid = sessions[0].id.clone();
    let leader = &list[1];
    assert_eq!(leader["Value"], json!(b64("pg0")), "leader is the plain member name");
    assert_eq!(leader["Session"], json!(sid));
    assert_eq!(leader["LockIndex"], json!(1));
    assert_eq!(list[2]["Session"], json!(sid), "member key bound to the same session");
    assert_eq!(list[2]["Value"], json!(b64(MEMBER)), "member JSON stored verbatim");
    assert_eq!(list[0]["Value"], Value::Null, "empty initialize value");
    assert_eq!(list[0].get("Session"), None, "initialize is not bound to the session");
    assert!(index.unwrap() >= list.iter().map(|e| e["ModifyIndex"].as_u64().unwrap()).max().unwrap());
}

// P:dcs/consul.py _do_refresh_session: name <scope>-<name>, checks [], lockdelay 0.001s, behavior delete, ttl/2.
#[tokio::test]
async fn the_session_is_created_as_patroni_creates_it() {
    let server = start_model(Options::default()).await;
    let scope = unique_scope("sess");
    let c = connect(&section(&server.url()), params(&scope, "pg1", Duration::from_secs(30))).await;
    c.load_cluster().await.unwrap();
    assert!(server.sessions().is_empty(), "reading needs no session (praetorctl, like patronictl)");
    assert!(c.touch_member(MEMBER).await.unwrap());
    let (_, _, list) = get_json(&format!("{}/v1/session/list", server.url())).await;
    let s = &list[0];
    assert_eq!(s["Name"], json!(format!("{scope}-pg1")));
    assert_eq!(s["TTL"], json!("15.0s"), "half the ttl, formatted as Patroni does");
    assert_eq!(s["Behavior"], json!("delete"));
    assert_eq!(s["LockDelay"], json!(1_000_000), "0.001s in nanoseconds");
    assert_eq!(s["NodeChecks"], json!([]), "no serfHealth check");
}

#[tokio::test]
async fn checks_from_the_config_are_bound_to_the_session() {
    let server = start_model(Options::default()).await;
    let cfg =
        ConsulConfig { url: Some(server.url()), checks: vec!["serfHealth".into()], ..Default::default() };
    let c =
        connect(&DcsSection::Consul(cfg), params(&unique_scope("chk"), "pg0", Duration::from_secs(30))).await;
    assert!(c.touch_member(MEMBER).await.unwrap());
    assert_eq!(server.sessions()[0].node_checks, ["serfHealth"]);
}

// P:dcs/consul.py _do_refresh_session: a 404 on renew means a new session; touch_member re-creates the member key.
#[tokio::test]
async fn a_lost_session_is_recreated_and_the_keys_are_written_again() {
    crate::support::init_logging();
    let server = start_model(Options::default()).await;
    let scope = unique_scope("lost");
    let c = connect(&section(&server.url()), params(&scope, "pg0", Duration::from_secs(30))).await;
    assert!(c.touch_member(MEMBER).await.unwrap());
    assert!(c.attempt_to_acquire_leader().await.unwrap());
    let old = server.sessions()[0].id.clone();
    let leader = c.load_cluster().await.unwrap().leader.expect("leader");
    assert!(server.expire_session(&old));
    assert!(server.kv_entry(&format!("service/{scope}/leader")).is_none(), "behavior delete removed the key");

    // The holder's next cycle: the renew answers 404, a new session takes the key back.
    assert!(c.update_leader(Some(&leader)).await.unwrap());
    let sessions = server.sessions();
    assert_eq!(sessions.len(), 1);
    let new = sessions[0].id.clone();
    assert_ne!(new, old);
    assert_eq!(
        server.kv_entry(&format!("service/{scope}/leader")).unwrap().session.as_deref(),
        Some(new.as_str())
    );
    c.load_cluster().await.unwrap();
    assert!(c.touch_member(MEMBER).await.unwrap());
    assert_eq!(
        server.kv_entry(&format!("service/{scope}/members/pg0")).unwrap().session.as_deref(),
        Some(new.as_str())
    );
}

// P:dcs/consul.py adjust_ttl: "Invalid Session TTL" → use agent/self Config.SessionTTLMin.
#[tokio::test]
async fn a_rejected_session_ttl_adopts_the_agents_minimum() {
    crate::support::init_logging();
    let server =
        start_model(Options { session_ttl_min: Duration::from_secs(12), ..Options::default() }).await;
    let c =
        connect(&section(&server.url()), params(&unique_scope("ttl"), "pg0", Duration::from_secs(20))).await;
    assert!(c.touch_member(MEMBER).await.unwrap());
    let s = server.sessions();
    assert_eq!(s.len(), 1);
    assert_eq!(s[0].ttl, "12.0s");
}

#[tokio::test]
async fn injected_server_errors_are_retried_within_retry_timeout() {
    let server = start_model(fast_options()).await;
    let scope = unique_scope("retry");
    let mut p = params(&scope, "pg0", Duration::from_secs(30));
    p.retry_timeout = Duration::from_secs(3);
    let c = connect(&section(&server.url()), p).await;
    assert!(c.set_config_value("{}", None).await.unwrap());
    server.inject_fault(Fault {
        path_prefix: "/v1/kv/".into(),
        status: Some(500),
        remaining: Some(2),
        delay: None,
    });
    let cl = c.load_cluster().await.expect("two 500s are retried");
    assert!(cl.config.is_some());
    server.inject_fault(Fault {
        path_prefix: "/v1/kv/".into(),
        status: Some(503),
        remaining: None,
        delay: None,
    });
    let t = std::time::Instant::now();
    let e = c.load_cluster().await.expect_err("a lasting outage is an error");
    assert!(matches!(e, DcsError::Unavailable(_)), "{e:?}");
    assert!(t.elapsed() < Duration::from_secs(5), "gave up after retry_timeout, took {:?}", t.elapsed());
    server.clear_faults();
    // A hanging server is cut off by the per-request timeout.
    server.inject_fault(Fault {
        path_prefix: "/v1/kv/".into(),
        status: None,
        remaining: Some(1),
        delay: Some(Duration::from_secs(20)),
    });
    let t = std::time::Instant::now();
    assert!(c.load_cluster().await.is_ok(), "the retry after the timed-out request succeeds");
    assert!(t.elapsed() < Duration::from_secs(3), "took {:?}", t.elapsed());
}

// developer.hashicorp.com/consul/api-docs/features/consistency: stale reads are served without a leader.
#[tokio::test]
async fn stale_consistency_reads_survive_a_lost_raft_leader() {
    let server = start_model(fast_options()).await;
    let scope = unique_scope("stale");
    let mut p = params(&scope, "pg0", Duration::from_secs(30));
    p.retry_timeout = Duration::from_secs(1);
    let default = connect(&section(&server.url()), p.clone()).await;
    assert!(default.set_config_value(r#"{"ttl":30}"#, None).await.unwrap());
    let cfg =
        ConsulConfig { url: Some(server.url()), consistency: Some("stale".into()), ..Default::default() };
    let stale = connect(&DcsSection::Consul(cfg), p).await;
    server.set_leader(false);
    assert!(matches!(default.load_cluster().await, Err(DcsError::Unavailable(_))));
    assert!(stale.load_cluster().await.unwrap().config.is_some());
    assert!(
        matches!(stale.set_config_value("{}", None).await, Err(DcsError::Unavailable(_))),
        "writes need a leader"
    );
    server.set_leader(true);
    assert!(default.load_cluster().await.is_ok());
}

#[tokio::test]
async fn the_acl_token_and_datacenter_are_sent() {
    let server = start_model(Options { acl_token: Some("s3cret".into()), ..fast_options() }).await;
    let scope = unique_scope("acl");
    let p = params(&scope, "pg0", Duration::from_secs(30));
    let good = ConsulConfig {
        url: Some(server.url()),
        token: Some(praetor::types::Secret("s3cret".into())),
        dc: Some("dc1".into()),
        ..Default::default()
    };
    let c = connect(&DcsSection::Consul(good.clone()), p.clone()).await;
    assert!(c.touch_member(MEMBER).await.unwrap());
    assert!(c.load_cluster().await.unwrap().member("pg0").is_some());

    let bad = ConsulConfig { token: Some(praetor::types::Secret("wrong".into())), ..good.clone() };
    let c = connect(&DcsSection::Consul(bad), p.clone()).await;
    let e = c.load_cluster().await.expect_err("denied");
    assert!(format!("{e:?}").contains("ACL not found"), "{e:?}");

    let other_dc = ConsulConfig { dc: Some("dc9".into()), ..good };
    let c = connect(&DcsSection::Consul(other_dc), p).await;
    assert!(
        format!("{:?}", c.load_cluster().await.expect_err("no such dc")).contains("No path to datacenter")
    );
}

// P:dcs/consul.py _update_service: id <scope>/<name>, tags + role (+master), HTTP check on <api>/<role>.
#[tokio::test]
async fn register_service_publishes_the_role_and_an_http_check() {
    let server = start_model(Options::default()).await;
    let scope = unique_scope("svc");
    let cfg = ConsulConfig {
        url: Some(server.url()),
        register_service: Some(true),
        service_tags: vec!["zeta".into(), "alpha".into()],
        ..Default::default()
    };
    let c = connect(&DcsSection::Consul(cfg), params(&scope, "pg0", Duration::from_secs(30))).await;
    assert!(c.touch_member(MEMBER).await.unwrap());
    let svcs = server.services();
    assert_eq!(svcs.len(), 1, "{svcs:?}");
    let s = &svcs[0];
    assert_eq!(s["ID"], json!(format!("{scope}/pg0")));
    assert_eq!(s["Service"], json!(scope));
    assert_eq!(s["Tags"], json!(["alpha", "zeta", "primary", "master"]));
    assert_eq!(s["Address"], json!("127.0.0.1"));
    assert_eq!(s["Port"], json!(5433));
    let check = &s["Checks"][0];
    assert_eq!(check["HTTP"], json!("http://127.0.0.1:8009/primary"));
    assert_eq!(check["Interval"], json!("5s"));
    assert_eq!(check["DeregisterCriticalServiceAfter"], json!("150.0s"));

    let stopped = MEMBER.replace(r#""state":"running""#, r#""state":"stopped""#);
    c.load_cluster().await.unwrap();
    assert!(c.touch_member(&stopped).await.unwrap());
    assert!(server.services().is_empty(), "deregistered when stopped");
}

// P:dcs/consul.py set_ttl: a new ttl means a new session and an immediate next cycle.
#[tokio::test]
async fn a_new_ttl_creates_a_new_session_and_skips_the_next_watch() {
    let server = start_model(fast_options()).await;
    let scope = unique_scope("timing");
    let c = connect(&section(&server.url()), params(&scope, "pg0", Duration::from_secs(30))).await;
    assert!(c.touch_member(MEMBER).await.unwrap());
    c.set_timing(Duration::from_secs(40), Duration::from_secs(1), Duration::from_secs(1)).await.unwrap();
    let t = std::time::Instant::now();
    assert!(c.watch(None, Duration::from_secs(5)).await.unwrap());
    assert!(t.elapsed() < Duration::from_secs(1));
    c.load_cluster().await.unwrap();
    assert!(c.touch_member(MEMBER).await.unwrap());
    let ttls: Vec<String> = server.sessions().iter().map(|s| s.ttl.clone()).collect();
    assert!(ttls.contains(&"20.0s".to_string()), "{ttls:?}");
    let e = server.kv_entry(&format!("service/{scope}/members/pg0")).unwrap();
    let s20 = server.sessions().into_iter().find(|s| s.ttl == "20.0s").unwrap();
    assert_eq!(e.session.as_deref(), Some(s20.id.as_str()), "member moved to the new session");
}

// developer.hashicorp.com/consul/api-docs/features/blocking: a blocking query returns with the new index on change.
#[tokio::test]
async fn blocking_queries_on_the_model_wait_for_a_change_and_time_out() {
    let server = start_model(fast_options()).await;
    let url = format!("{}/v1/kv/service/b/leader", server.url());
    let http = reqwest::Client::new();
    assert!(http.put(&url).body("pg0").send().await.unwrap().status().is_success());
    let (_, idx, _) = get_json(&url).await;
    let idx = idx.unwrap();
    let t = std::time::Instant::now();
    let (_, same, _) = get_json(&format!("{url}?index={idx}&wait=1s")).await;
    assert_eq!(same, Some(idx));
    assert!(
        t.elapsed() >= Duration::from_secs(1) && t.elapsed() < Duration::from_millis(1500),
        "{:?}",
        t.elapsed()
    );
    let u2 = url.clone();
    let w = tokio::spawn(async move { get_json(&format!("{u2}?index={idx}&wait=10s")).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(http.delete(&url).send().await.unwrap().status().is_success());
    let (status, after, _) = w.await.unwrap();
    assert_eq!(status, 404);
    assert!(after.unwrap() > idx);
}

/// Patroni 4.1.5's own Consul backend against the Consul API model: two real Patroni nodes with
/// PostgreSQL 15 bootstrap, exactly one leads, and killing it fails over. If Patroni misbehaves here,
/// the model is wrong. One run's request/response transcript is kept in
/// `tests/fixtures/consul/patroni-4.1.5-transcript.jsonl` (rewritten when
/// `PRAETOR_UPDATE_FIXTURES=1`).
mod patroni_cluster {
    use super::*;
    use crate::support::consul::{PATRONI_VERSION, patroni_venv};
    use crate::support::postgres::{PG_BIN_DIR, PgCluster};
    use crate::support::{ChildGuard, free_port, wait_for};
    use consul_api_server::{ConsulApiServer, ServerOptions};
    use praetor::postgres::RunAs;
    use std::os::unix::fs::PermissionsExt;
    use std::path::{Path, PathBuf};
    use std::process::Command;

    const SCOPE: &str = "xcheck";

    struct Node {
        api: u16,
        data_dir: PathBuf,
        patroni: ChildGuard,
    }

    fn write_config(home: &Path, name: &str, consul: &str, api: u16, pg: u16) -> PathBuf {
        let h = home.display();
        let yml = format!(
            r#"scope: {SCOPE}
namespace: /service/
name: {name}
restapi:
  listen: 127.0.0.1:{api}
  connect_address: 127.0.0.1:{api}
consul:
  url: {consul}
  register_service: true
bootstrap:
  dcs:
    ttl: 20
    loop_wait: 2
    retry_timeout: 3
    maximum_lag_on_failover: 1048576
    postgresql:
      use_pg_rewind: false
      parameters:
        max_wal_senders: 5
        max_replication_slots: 5
  initdb:
  - encoding: UTF8
  - locale: C
postgresql:
  listen: 127.0.0.1:{pg}
  connect_address: 127.0.0.1:{pg}
  data_dir: {h}/data
  bin_dir: {PG_BIN_DIR}
  pgpass: {h}/pgpass
  authentication:
    superuser:
      username: postgres
      password: su-secret
    replication:
      username: replicator
      password: rep-secret
  parameters:
    unix_socket_directories: {h}
    shared_buffers: 16MB
    fsync: 'off'
  pg_hba:
  - local all all trust
  - host all all 127.0.0.1/32 trust
  - host replication replicator 127.0.0.1/32 trust
"#
        );
        let path = home.join("patroni.yml");
        std::fs::write(&path, yml).expect("write patroni.yml");
        path
    }

    fn start_node(pg: &mut PgCluster, venv_bin: &Path, consul: &str, name: &str) -> Node {
        let home = pg.dir.subdir(name);
        std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o700)).expect("chmod node dir");
        if let Ok(Some(r)) = RunAs::for_agent("postgres") {
            r.chown(&home).expect("give the node directory to postgres");
        }
        let api = free_port();
        let cfg = write_config(&home, name, consul, api, free_port());
        let data_dir = home.join("data");
        pg.guard.watch(&data_dir);
        // Patroni runs as the postgres user (it starts PostgreSQL itself), spawned directly so that
        // SIGTERM reaches it (runuser would SIGKILL it 2 s after forwarding the signal).
        let mut cmd = Command::new(venv_bin.join("patroni"));
        cmd.arg(&cfg)
            .env_clear()
            .env("HOME", &home)
            .env("PATH", format!("{}:/usr/bin:/bin", venv_bin.display()))
            .env("LANG", "C.UTF-8");
        if let Ok(Some(r)) = RunAs::for_agent("postgres") {
            use std::os::unix::process::CommandExt;
            cmd.uid(r.uid.as_raw()).gid(r.gid.as_raw());
        }
        let patroni =
            ChildGuard::spawn(&format!("patroni-{name}"), &mut cmd, &pg.dir.join(format!("{name}.log")));
        Node { api, data_dir, patroni }
    }

    async fn role(http: &reqwest::Client, api: u16) -> Option<(String, String)> {
        let r = http.get(format!("http://127.0.0.1:{api}/patroni")).send().await.ok()?;
        let v: Value = r.json().await.ok()?;
        Some((v["role"].as_str()?.to_string(), v["state"].as_str()?.to_string()))
    }

    fn leader_key(server: &ConsulApiServer) -> Option<String> {
        server
            .kv_entry(&format!("service/{SCOPE}/leader"))
            .map(|e| String::from_utf8_lossy(&e.value).into_owned())
    }

    fn logs(nodes: &[Node]) -> String {
        nodes.iter().map(|n| n.patroni.log_tail(6000)).collect::<Vec<_>>().join("\n")
    }

    fn kill_postmaster(data_dir: &Path) {
        if let Ok(Some(pf)) = praetor::postgres::postmaster::PidFile::read(data_dir)
            && praetor::postgres::postmaster::is_postmaster_of(pf.pid, data_dir)
        {
            let _ =
                nix::sys::signal::kill(nix::unistd::Pid::from_raw(pf.pid), nix::sys::signal::Signal::SIGKILL);
        }
    }

    // ha.py: the member holding the leader key is primary; when its session dies another takes over.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn patroni_bootstraps_and_fails_over_on_the_consul_model() {
        let bin = crate::require_pg!();
        let Some(venv_bin) = patroni_venv() else { return };
        let mut pg = PgCluster::new("consul-patroni", bin);
        let transcript = pg.dir.join("transcript.jsonl");
        let server = ConsulApiServer::start(ServerOptions {
            listen: std::net::SocketAddr::from(([127, 0, 0, 1], free_port())),
            store: consul_api_server::Options::default(),
            transcript: Some(transcript.clone()),
            tls: None,
        })
        .await
        .expect("start the Consul API model");
        let http = reqwest::Client::builder().timeout(Duration::from_secs(2)).build().unwrap();
        let note = |text: &str| {
            let (http, url, text) = (http.clone(), server.url(), text.to_string());
            async move {
                let _ = http.post(format!("{url}/_test/transcript/note")).body(text).send().await;
            }
        };

        let mut nodes = vec![start_node(&mut pg, &venv_bin, &server.url(), "pg0")];
        let up = wait_for(Duration::from_secs(90), || async {
            leader_key(&server).as_deref() == Some("pg0")
                && role(&http, nodes[0].api).await.is_some_and(|(r, s)| r == "primary" && s == "running")
        })
        .await;
        assert!(up, "pg0 did not bootstrap as primary\n{}", logs(&nodes));
        nodes.push(start_node(&mut pg, &venv_bin, &server.url(), "pg1"));
        let both = wait_for(Duration::from_secs(90), || async {
            role(&http, nodes[1].api).await.is_some_and(|(r, s)| r == "replica" && s == "running")
        })
        .await;
        assert!(both, "pg1 did not join as a replica\n{}", logs(&nodes));
        assert_eq!(leader_key(&server).as_deref(), Some("pg0"), "exactly one leader");
        assert_eq!(role(&http, nodes[0].api).await.map(|x| x.0).as_deref(), Some("primary"));
        // Both members are published under the agent's session, as Patroni writes them.
        // (Patroni creates a session with the default ttl 30 first and a new one once it has read
        // ttl 20 from the DCS; the first is left to expire.)
        let sessions = server.sessions();
        let members: Vec<consul_api_server::KvEntry> = server
            .kv_entries()
            .into_iter()
            .filter(|e| e.key.starts_with(&format!("service/{SCOPE}/members/")))
            .collect();
        assert_eq!(members.len(), 2, "{members:?}");
        let leader = server.kv_entry(&format!("service/{SCOPE}/leader")).expect("leader key");
        for (e, owner) in
            members.iter().map(|m| (m, m.key.rsplit('/').next().unwrap())).chain([(&leader, "pg0")])
        {
            let sid = e.session.as_deref().unwrap_or_else(|| panic!("{} is not bound to a session", e.key));
            let s = sessions.iter().find(|s| s.id == sid).expect("a live session");
            assert_eq!(s.name, format!("{SCOPE}-{owner}"));
            assert_eq!(s.ttl, "10.0s", "ttl/2");
            assert!(s.node_checks.is_empty());
        }
        assert_eq!(server.services().len(), 2, "register_service: {:?}", server.services());

        // Crash the leader: Patroni and its postmaster.
        note("SIGKILL pg0 (patroni and postmaster)").await;
        let t = std::time::Instant::now();
        nodes[0].patroni.kill();
        kill_postmaster(&nodes[0].data_dir);
        let failover = wait_for(Duration::from_secs(90), || async {
            leader_key(&server).as_deref() == Some("pg1")
                && role(&http, nodes[1].api).await.is_some_and(|(r, s)| r == "primary" && s == "running")
        })
        .await;
        assert!(failover, "pg1 did not take over\n{}", logs(&nodes));
        // The session lives up to 2×(ttl/2) = ttl after the last renewal.
        assert!(t.elapsed() >= Duration::from_secs(8), "took over too early: {:?}", t.elapsed());
        note(&format!("pg1 is primary after {:?}", t.elapsed())).await;
        // A graceful stop releases the leader key (P:dcs/consul.py _delete_leader: DELETE ?cas=).
        let settled = wait_for(Duration::from_secs(30), || async {
            let m = server.kv_entry(&format!("service/{SCOPE}/members/pg1"));
            m.is_some_and(|m| {
                let v: Value = serde_json::from_slice(&m.value).unwrap_or(Value::Null);
                v["role"] == "primary"
                    && v["state"] == "running"
                    && v.get("checkpoint_after_promote").is_none()
            })
        })
        .await;
        assert!(settled, "pg1 did not publish itself as a running primary\n{}", logs(&nodes));
        nodes[1].patroni.stop(Duration::from_secs(30));
        note("pg1 stopped").await;
        assert_eq!(leader_key(&server), None, "the leader key is released on shutdown\n{}", logs(&nodes));

        let text = std::fs::read_to_string(&transcript).expect("transcript");
        check_transcript(&text);
        if std::env::var_os("PRAETOR_UPDATE_FIXTURES").is_some() {
            let dest = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join(format!("tests/fixtures/consul/patroni-{PATRONI_VERSION}-transcript.jsonl"));
            std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
            std::fs::write(&dest, &text).unwrap();
            eprintln!("wrote {}", dest.display());
        }
    }

    /// What a Patroni 4.1.5 transcript on the model must show (also checked on the stored fixture).
    pub(super) fn check_transcript(text: &str) {
        let lines: Vec<Value> = text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
        let reqs: Vec<&Value> = lines.iter().filter(|l| l.get("method").is_some()).collect();
        assert!(reqs.len() > 20, "a real conversation: {} requests", reqs.len());
        let find = |pred: &dyn Fn(&Value) -> bool| reqs.iter().copied().find(|r| pred(r));
        let uri = |r: &Value| r["uri"].as_str().unwrap_or("").to_string();
        let create = find(&|r| {
            uri(r).starts_with("/v1/session/create") && r["request"].as_str().unwrap().contains("10.0s")
        })
        .expect("session create with ttl/2");
        let body: Value = serde_json::from_str(create["request"].as_str().unwrap()).expect("JSON body");
        assert_eq!(body["checks"], json!([]));
        assert_eq!(body["lockdelay"], json!("0.001s"));
        assert_eq!(body["behavior"], json!("delete"));
        assert_eq!(body["ttl"], json!("10.0s"));
        assert!(body["name"].as_str().unwrap().starts_with(&format!("{SCOPE}-")));
        assert!(find(&|r| uri(r).starts_with(&format!("/v1/kv/service/{SCOPE}/initialize?cas=0"))).is_some());
        assert!(
            find(&|r| uri(r).starts_with(&format!("/v1/kv/service/{SCOPE}/leader?acquire="))
                && r["response"] == "true")
            .is_some()
        );
        assert!(
            find(&|r| uri(r).starts_with(&format!("/v1/kv/service/{SCOPE}/members/"))
                && uri(r).contains("acquire="))
            .is_some()
        );
        assert!(find(&|r| uri(r).starts_with(&format!("/v1/kv/service/{SCOPE}/?recurse"))).is_some());
        assert!(find(&|r| uri(r).starts_with("/v1/session/renew/") && r["status"] == 200).is_some());
        assert!(
            find(&|r| uri(r).contains("/leader?index=") && uri(r).contains("wait=")).is_some(),
            "blocking watch"
        );
        assert!(find(&|r| uri(r).starts_with("/v1/agent/service/register")).is_some());
        assert!(
            find(&|r| r["method"] == "DELETE"
                && uri(r).starts_with(&format!("/v1/kv/service/{SCOPE}/leader?cas="))
                && r["response"] == "true")
            .is_some(),
            "leader released with a CAS delete"
        );
        // Nothing Patroni sent was refused as malformed.
        for r in &reqs {
            let st = r["status"].as_u64().unwrap_or(0);
            assert!(st != 400 && st != 405 && st != 413, "refused: {r}");
        }
    }
}

#[test]
fn the_stored_patroni_transcript_shows_the_documented_conversation() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/consul/patroni-4.1.5-transcript.jsonl");
    let text =
        std::fs::read_to_string(&path).expect("the fixture exists (PRAETOR_UPDATE_FIXTURES=1 rewrites it)");
    patroni_cluster::check_transcript(&text);
}

// P:dcs/consul.py _do_refresh_session + py-consul session.create: praetor sends the body Patroni sends.
#[tokio::test]
async fn the_session_create_body_equals_patronis_recorded_one() {
    let dir = crate::support::TestDir::new("consul-body");
    let transcript = dir.join("t.jsonl");
    let server = consul_api_server::ConsulApiServer::start(consul_api_server::ServerOptions {
        listen: std::net::SocketAddr::from(([127, 0, 0, 1], crate::support::free_port())),
        store: Options::default(),
        transcript: Some(transcript.clone()),
        tls: None,
    })
    .await
    .unwrap();
    let c = connect(&section(&server.url()), params("xcheck", "pg0", Duration::from_secs(20))).await;
    assert!(c.attempt_to_acquire_leader().await.unwrap());
    let body_of = |text: &str| -> Value {
        let line = text
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|l| {
                l["uri"] == "/v1/session/create" && l["request"].as_str().unwrap_or("").contains("10.0s")
            })
            .expect("a session create with ttl 10.0s");
        serde_json::from_str(line["request"].as_str().unwrap()).unwrap()
    };
    let ours = body_of(&std::fs::read_to_string(&transcript).unwrap());
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/consul/patroni-4.1.5-transcript.jsonl");
    let patroni = body_of(&std::fs::read_to_string(fixture).unwrap());
    assert_eq!(ours, patroni);
    let keys = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    assert_eq!(keys(&ours), keys(&patroni), "same field order");
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate, made with the openssl CLI.
fn make_certs(dir: &std::path::Path) -> Option<()> {
    let openssl = crate::support::require_bin("/usr/bin/openssl")?;
    let run = |args: &[&str]| {
        let out =
            std::process::Command::new(&openssl).args(args).current_dir(dir).output().expect("run openssl");
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    std::fs::write(dir.join("server.ext"), "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
        .unwrap();
    std::fs::write(dir.join("client.ext"), "extendedKeyUsage=clientAuth\n").unwrap();
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=praetor-test-ca",
    ]);
    for who in ["server", "client"] {
        run(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            &format!("{who}.key"),
            "-out",
            &format!("{who}.csr"),
            "-subj",
            &format!("/CN={who}"),
        ]);
        run(&[
            "x509",
            "-req",
            "-in",
            &format!("{who}.csr"),
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            &format!("{who}.pem"),
            "-days",
            "2",
            "-extfile",
            &format!("{who}.ext"),
        ]);
    }
    Some(())
}

// P:dcs/consul.py: scheme https with cacert, cert+key, verify (CERT_NONE only when verify is off and no cacert).
#[tokio::test]
async fn tls_with_cacert_client_certificate_and_verify_settings() {
    crate::support::init_logging();
    let dir = crate::support::TestDir::new("consul-tls");
    if make_certs(dir.path()).is_none() {
        return;
    }
    let read = |f: &str| std::fs::read(dir.join(f)).unwrap();
    let start = |client_ca: Option<Vec<u8>>| {
        let tls = consul_api_server::TlsOptions {
            cert_pem: read("server.pem"),
            key_pem: read("server.key"),
            client_ca_pem: client_ca,
        };
        consul_api_server::ConsulApiServer::start(consul_api_server::ServerOptions {
            listen: std::net::SocketAddr::from(([127, 0, 0, 1], crate::support::free_port())),
            store: fast_options(),
            transcript: None,
            tls: Some(tls),
        })
    };
    let server = start(None).await.unwrap();
    let host = server.addr().to_string();
    let mut p = params(&unique_scope("tls"), "pg0", Duration::from_secs(30));
    p.retry_timeout = Duration::from_secs(1);
    let https = ConsulConfig { host: Some(host.clone()), scheme: Some("https".into()), ..Default::default() };

    let with_ca = ConsulConfig { cacert: Some(dir.join("ca.pem")), ..https.clone() };
    let c = connect(&DcsSection::Consul(with_ca.clone()), p.clone()).await;
    assert!(c.touch_member(MEMBER).await.unwrap(), "verified against the CA");
    assert!(c.load_cluster().await.unwrap().member("pg0").is_some());

    let c = connect(&DcsSection::Consul(https.clone()), p.clone()).await;
    assert!(
        matches!(c.load_cluster().await, Err(DcsError::Unavailable(_))),
        "unknown CA is refused by default"
    );

    let no_verify = ConsulConfig { verify: Some(false), ..https.clone() };
    let c = connect(&DcsSection::Consul(no_verify), p.clone()).await;
    assert!(c.load_cluster().await.is_ok(), "verify: false accepts the unknown CA");

    // verify_incoming: the client certificate is required.
    let mtls = start(Some(read("ca.pem"))).await.unwrap();
    let with_ca = ConsulConfig { host: Some(mtls.addr().to_string()), ..with_ca };
    let c = connect(&DcsSection::Consul(with_ca.clone()), p.clone()).await;
    assert!(matches!(c.load_cluster().await, Err(DcsError::Unavailable(_))), "no client certificate");
    let with_cert =
        ConsulConfig { cert: Some(dir.join("client.pem")), key: Some(dir.join("client.key")), ..with_ca };
    let c = connect(&DcsSection::Consul(with_cert), p).await;
    assert!(c.touch_member(MEMBER).await.unwrap(), "client certificate accepted");
}

/// praetor's own agents on the Consul API model: three nodes bootstrap, an unplanned failover when
/// the leader dies, and a switchover through the `failover` key (PATRONI-COMPAT §6.2–§6.5).
mod praetor_cluster {
    use super::*;
    use crate::support::agents::{AgentCluster, BoxFut, Store};
    use consul_api_server::ConsulApiServer;

    struct Model {
        server: ConsulApiServer,
        http: reqwest::Client,
    }

    impl Store for Model {
        fn yaml(&self) -> String {
            format!("consul:\n  url: {}\n", self.server.url())
        }
        fn leader(&self, scope: &str) -> BoxFut<'_, Option<String>> {
            let v = self
                .server
                .kv_entry(&format!("service/{scope}/leader"))
                .map(|e| String::from_utf8_lossy(&e.value).into_owned());
            Box::pin(async move { v })
        }
        fn put_failover(&self, scope: &str, value: String) -> BoxFut<'_, ()> {
            let url = format!("{}/v1/kv/service/{scope}/failover", self.server.url());
            Box::pin(async move {
                assert!(self.http.put(url).body(value).send().await.unwrap().status().is_success());
            })
        }
        fn failover(&self, scope: &str) -> BoxFut<'_, Option<String>> {
            let v = self
                .server
                .kv_entry(&format!("service/{scope}/failover"))
                .map(|e| String::from_utf8_lossy(&e.value).into_owned());
            Box::pin(async move { v })
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn praetor_bootstraps_fails_over_and_switches_over_on_the_consul_model() {
        // session_ttl_min 1s (a Consul agent setting) so that ttl 10 gives 5 s sessions.
        let server = start_model(fast_options()).await;
        let http = reqwest::Client::builder().timeout(Duration::from_secs(2)).build().expect("http client");
        let model = Model { server, http };
        let Some(mut c) = AgentCluster::start("hacons", &model) else { return };
        let leader = c.wait_healthy(&model, Duration::from_secs(120)).await;
        // The leader key and every member key are bound to their agent's session.
        for e in model
            .server
            .kv_entries()
            .iter()
            .filter(|e| e.key.contains("/members/") || e.key.ends_with("/leader"))
        {
            let sid = e.session.as_deref().unwrap_or_else(|| panic!("{} has no session", e.key));
            let s = model.server.sessions().into_iter().find(|s| s.id == sid).expect("live session");
            assert_eq!(s.ttl, "5.0s", "ttl/2");
            assert_eq!(s.behavior, consul_api_server::Behavior::Delete);
        }

        // Unplanned failover: the leader's agent and postmaster die; its session expires after
        // 2×(ttl/2) and another member takes the key.
        let (new_leader, took) = c.fail_over(&model, leader).await;
        assert!(took >= Duration::from_secs(3), "failover before the session could expire: {took:?}");

        // Switchover through the `failover` key to the remaining replica.
        let cand = (0..3).find(|i| *i != leader && *i != new_leader).expect("a third node");
        c.switch_over(&model, new_leader, cand).await;
        c.stop_all();
    }
}

// The model's /_test/ control API, as the demo and compose scripts use it over HTTP.
#[tokio::test]
async fn the_control_api_expires_sessions_injects_faults_and_loses_the_leader() {
    let server = start_model(Options::default()).await;
    let http = reqwest::Client::new();
    let u = server.url();
    let id =
        http.put(format!("{u}/v1/session/create")).body(r#"{"Behavior":"delete"}"#).send().await.unwrap();
    let id = id.json::<Value>().await.unwrap()["ID"].as_str().unwrap().to_string();
    let put = http.put(format!("{u}/v1/kv/k?acquire={id}")).body("v").send().await.unwrap();
    assert_eq!(put.text().await.unwrap(), "true");
    let r = http.post(format!("{u}/_test/sessions/{id}/expire")).send().await.unwrap();
    assert_eq!(r.text().await.unwrap(), "true");
    assert_eq!(http.get(format!("{u}/v1/kv/k")).send().await.unwrap().status(), 404, "behavior delete");
    let r = http.put(format!("{u}/v1/session/renew/{id}")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(r.text().await.unwrap(), format!("Session id '{id}' not found"));

    let f = json!({"path_prefix": "/v1/kv/", "status": 503, "count": 1});
    http.post(format!("{u}/_test/fault")).body(f.to_string()).send().await.unwrap();
    let r = http.get(format!("{u}/v1/kv/k")).send().await.unwrap();
    assert_eq!(r.status(), 503);
    assert!(r.headers().contains_key("x-consul-index"), "X-Consul-Index on every response");
    assert_eq!(http.get(format!("{u}/v1/kv/k")).send().await.unwrap().status(), 404, "count 1: used up");

    http.post(format!("{u}/_test/leader/lose")).send().await.unwrap();
    assert_eq!(
        http.get(format!("{u}/v1/status/leader")).send().await.unwrap().text().await.unwrap(),
        r#""""#
    );
    let r = http.get(format!("{u}/v1/kv/k")).send().await.unwrap();
    assert_eq!((r.status().as_u16(), r.text().await.unwrap()), (500, "No cluster leader".to_string()));
    assert_eq!(
        http.get(format!("{u}/v1/kv/k?stale")).send().await.unwrap().status(),
        404,
        "stale reads work"
    );
    http.post(format!("{u}/_test/leader/restore")).send().await.unwrap();
    assert_eq!(
        http.get(format!("{u}/v1/status/leader")).send().await.unwrap().text().await.unwrap(),
        r#""127.0.0.1:8300""#
    );
}
