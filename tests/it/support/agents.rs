//! Three `praetor` agents with real PostgreSQL 15 on one DCS, for cluster tests that run on any
//! store: the caller gives the YAML section of its DCS (`etcd3:`, `consul:`, `zookeeper:`) and a way
//! to read the leader key and write the `failover` key as another tool would.

use super::postgres::PgCluster;
use super::{ChildGuard, free_port, wait_for};
use serde_json::Value;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::process::Command;
use std::time::Duration;

/// `ttl` of the test clusters (praetor accepts < 20 with a warning).
pub const TTL: u64 = 10;
/// `loop_wait` of the test clusters.
pub const LOOP_WAIT: u64 = 1;

/// A boxed future, for the store's async accessors.
pub type BoxFut<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What a cluster test needs to know about the store under test.
pub trait Store: Send + Sync {
    /// The YAML section naming the store (`consul:\n  url: …\n`).
    fn yaml(&self) -> String;
    /// The value of the leader key, read directly from the store.
    fn leader(&self, scope: &str) -> BoxFut<'_, Option<String>>;
    /// Write the `failover` key directly, as patronictl's DCS fallback does.
    fn put_failover(&self, scope: &str, value: String) -> BoxFut<'_, ()>;
    /// The value of the `failover` key, read directly (None when absent).
    fn failover(&self, scope: &str) -> BoxFut<'_, Option<String>>;
}

/// One agent.
pub struct Node {
    /// Member name.
    pub name: String,
    /// REST API port.
    pub api: u16,
    /// PostgreSQL port.
    pub pg_port: u16,
    /// PostgreSQL data directory.
    pub data_dir: PathBuf,
    /// The agent process.
    pub agent: Option<ChildGuard>,
}

/// Three agents on one store.
pub struct AgentCluster {
    /// Cluster name.
    pub scope: String,
    /// The agents.
    pub nodes: Vec<Node>,
    /// HTTP client for the REST API.
    pub http: reqwest::Client,
    // Declared last: postmasters are stopped after the agents.
    pg: PgCluster,
}

impl AgentCluster {
    /// Start three agents of cluster `scope` on the store; `None` when PostgreSQL is missing (locally).
    pub fn start(scope: &str, store: &dyn Store) -> Option<AgentCluster> {
        AgentCluster::start_with(scope, store, 3, "")
    }

    /// Start `n` agents; `restapi_extra` is appended to each one's `restapi:` section (YAML lines
    /// indented by two spaces, e.g. TLS or authentication settings).
    pub fn start_with(scope: &str, store: &dyn Store, n: usize, restapi_extra: &str) -> Option<AgentCluster> {
        let bin = super::postgres::require_pg()?;
        let mut pg = PgCluster::new(scope, bin.clone());
        let q = |p: &std::path::Path| serde_json::to_string(&p.display().to_string()).expect("path as JSON");
        let mut nodes = Vec::new();
        for i in 0..n {
            let name = format!("pg{i}");
            let s = pg.node(&name);
            let home = s.data_dir.parent().expect("node home").to_path_buf();
            let api = free_port();
            let cfg = pg.dir.join(format!("{name}.yml"));
            let yaml = format!(
                r#"scope: {scope}
name: {name}
restapi:
  listen: 127.0.0.1:{api}
  connect_address: 127.0.0.1:{api}
{restapi_extra}{dcs}
bootstrap:
  dcs:
    ttl: {TTL}
    loop_wait: {LOOP_WAIT}
    retry_timeout: 3
    maximum_lag_on_failover: 1048576
    postgresql:
      use_pg_rewind: true
      use_slots: true
      parameters:
        wal_log_hints: "on"
        max_wal_senders: 10
        max_replication_slots: 10
  initdb:
    - encoding: UTF8
    - locale: C
postgresql:
  listen: 127.0.0.1:{port}
  connect_address: 127.0.0.1:{port}
  data_dir: {data}
  bin_dir: {bin}
  pgpass: {pgpass}
  pg_ctl_timeout: 30
  authentication:
    superuser: {{username: postgres, password: su-secret}}
    replication: {{username: replicator, password: rep-secret}}
    rewind: {{username: rewinder, password: rw-secret}}
  parameters:
    unix_socket_directories: {home}
    shared_buffers: 16MB
    fsync: "off"
  pg_hba:
    - local all all trust
    - host all all 127.0.0.1/32 scram-sha-256
    - host replication replicator 127.0.0.1/32 scram-sha-256
watchdog:
  mode: "off"
"#,
                dcs = store.yaml(),
                port = s.listen_hosts_port().1,
                data = q(&s.data_dir),
                bin = q(&bin),
                pgpass = q(&s.pgpass),
                home = q(&home),
            );
            std::fs::write(&cfg, yaml).expect("write the agent configuration");
            let mut cmd = Command::new(env!("CARGO_BIN_EXE_praetor"));
            cmd.arg(&cfg).env("RUST_LOG", "info");
            let agent = ChildGuard::spawn(&name, &mut cmd, &pg.dir.join(format!("{name}.log")));
            let pg_port = s.listen_hosts_port().1;
            nodes.push(Node { name, api, pg_port, data_dir: s.data_dir.clone(), agent: Some(agent) });
        }
        let http = reqwest::Client::builder().timeout(Duration::from_secs(2)).build().expect("http client");
        Some(AgentCluster { scope: scope.to_string(), nodes, http, pg })
    }

    /// The tails of every agent's log, for assertion messages.
    pub fn logs(&self) -> String {
        self.nodes
            .iter()
            .filter_map(|n| n.agent.as_ref().map(|a| a.log_tail(5000)))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Indexes of the running primaries and of the streaming replicas, from `GET /patroni`.
    pub async fn roles(&self) -> (Vec<usize>, Vec<usize>) {
        let (mut p, mut s) = (Vec::new(), Vec::new());
        for (i, n) in self.nodes.iter().enumerate() {
            let Ok(r) = self.http.get(format!("http://127.0.0.1:{}/patroni", n.api)).send().await else {
                continue;
            };
            let Ok(v) = r.json::<Value>().await else { continue };
            if v["role"] == "primary" && v["state"] == "running" {
                p.push(i);
            }
            if v["role"] == "replica" && v["replication_state"] == "streaming" {
                s.push(i);
            }
        }
        (p, s)
    }

    /// Wait until there is one primary holding the leader key and two streaming replicas; the leader.
    pub async fn wait_healthy(&self, store: &dyn Store, timeout: Duration) -> usize {
        let leader = std::cell::Cell::new(None);
        let ok = wait_for(timeout, || async {
            let (p, s) = self.roles().await;
            leader.set(p.first().copied());
            p.len() == 1
                && s.len() == 2
                && store.leader(&self.scope).await.as_deref() == Some(self.nodes[p[0]].name.as_str())
        })
        .await;
        assert!(ok, "cluster not healthy within {timeout:?}\n{}", self.logs());
        leader.get().expect("set when healthy")
    }

    /// SIGKILL node `i`'s agent and its postmaster together.
    pub fn kill_node(&mut self, i: usize) {
        self.nodes[i].agent.as_mut().expect("agent").kill();
        if let Ok(Some(pf)) = praetor::postgres::postmaster::PidFile::read(&self.nodes[i].data_dir) {
            let _ =
                nix::sys::signal::kill(nix::unistd::Pid::from_raw(pf.pid), nix::sys::signal::Signal::SIGKILL);
        }
    }

    /// Unplanned failover: kill the leader, wait for another node to hold the key as a running
    /// primary; returns the new leader and how long it took.
    pub async fn fail_over(&mut self, store: &dyn Store, leader: usize) -> (usize, Duration) {
        self.kill_node(leader);
        let killed = std::time::Instant::now();
        let new_leader = std::cell::Cell::new(None);
        let ok = wait_for(Duration::from_secs(TTL + LOOP_WAIT + 30), || async {
            let (p, _) = self.roles().await;
            let n = p.first().copied().filter(|i| *i != leader);
            new_leader.set(n);
            match n {
                Some(n) => store.leader(&self.scope).await.as_deref() == Some(self.nodes[n].name.as_str()),
                None => false,
            }
        })
        .await;
        assert!(ok, "no failover after the leader died\n{}", self.logs());
        (new_leader.get().expect("set"), killed.elapsed())
    }

    /// Switchover through the `failover` key from `leader` to `cand`; asserts it happens and the key
    /// is cleared afterwards.
    pub async fn switch_over(&self, store: &dyn Store, leader: usize, cand: usize) {
        let ok = wait_for(Duration::from_secs(60), || async { self.roles().await.1.contains(&cand) }).await;
        assert!(ok, "{} does not stream from the leader\n{}", self.nodes[cand].name, self.logs());
        let body = serde_json::json!({"leader": self.nodes[leader].name, "member": self.nodes[cand].name})
            .to_string();
        store.put_failover(&self.scope, body).await;
        let ok = wait_for(Duration::from_secs(60), || async {
            self.roles().await.0 == vec![cand]
                && store.leader(&self.scope).await.as_deref() == Some(self.nodes[cand].name.as_str())
        })
        .await;
        assert!(ok, "switchover to {} did not happen\n{}", self.nodes[cand].name, self.logs());
        let cleared = wait_for(Duration::from_secs(10), || async {
            store.failover(&self.scope).await.is_none_or(|v| v == "{}")
        })
        .await;
        assert!(cleared, "failover key not cleared: {:?}", store.failover(&self.scope).await);
    }

    /// Stop every agent (clean shutdown, bounded).
    pub fn stop_all(&mut self) {
        for n in self.nodes.iter_mut().rev() {
            if let Some(mut a) = n.agent.take() {
                a.stop(Duration::from_secs(40));
            }
        }
    }

    /// The directory holding the nodes' files.
    pub fn dir(&self) -> &std::path::Path {
        self.pg.dir.path()
    }
}

impl Drop for AgentCluster {
    fn drop(&mut self) {
        self.stop_all();
    }
}
