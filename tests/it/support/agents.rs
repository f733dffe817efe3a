//! Three `praetor` agents with real PostgreSQL 15 on one DCS, for cluster tests that run on any
//! store: the caller gives the YAML section of its DCS (`etcd3:`, `consul:`, `zookeeper:`, or a
//! `plugin:` section) and a way to read the leader key and write the `failover` key as another tool
//! would. [`AgentOpts`] adds failsafe mode, recording callbacks, or another agent binary.

use super::postgres::PgCluster;
use super::{ChildGuard, free_port, wait_for};
use serde_json::Value;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
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

/// Options of a test cluster.
#[derive(Clone, Debug, Default)]
pub struct AgentOpts {
    /// `failsafe_mode` in `bootstrap.dcs`.
    pub failsafe: bool,
    /// Every callback runs a script appending `<action> <role> <scope>` to [`Node::calls`].
    pub callbacks: bool,
    /// The agent binary (default: this build's `praetor`), e.g. a build with no compiled-in DCS.
    pub agent_bin: Option<PathBuf>,
    /// How many agents (0 means 3).
    pub nodes: usize,
    /// Appended to each agent's `restapi:` section (YAML lines indented by two spaces, e.g. TLS
    /// or authentication settings).
    pub restapi_extra: String,
    /// Appended to `bootstrap.dcs` (YAML lines indented by four spaces), e.g.
    /// `    synchronous_mode: true\n`.
    pub dcs_extra: String,
    /// Where each node runs (empty: every node on 127.0.0.1 with free ports, a child of the test).
    pub hosts: Vec<NodeHost>,
}

/// Where one node's agent and PostgreSQL run and listen.
#[derive(Clone, Debug)]
pub struct NodeHost {
    /// The address the REST API and PostgreSQL listen on and advertise.
    pub addr: String,
    /// REST API port.
    pub api_port: u16,
    /// PostgreSQL port.
    pub pg_port: u16,
    /// The network the other nodes connect from (pg_hba), e.g. `127.0.0.1/32`.
    pub cidr: String,
    /// The agent runs as `prefix… praetor <cfg>` (e.g. `ip netns exec <ns> setpriv …`, see
    /// [`super::netns::Net::prefix`]); empty: directly.
    pub prefix: Vec<String>,
}

impl NodeHost {
    /// On 127.0.0.1 with free ports, started directly.
    pub fn loopback() -> NodeHost {
        NodeHost {
            addr: "127.0.0.1".into(),
            api_port: free_port(),
            pg_port: free_port(),
            cidr: "127.0.0.1/32".into(),
            prefix: Vec::new(),
        }
    }
}

/// One agent.
pub struct Node {
    /// Member name.
    pub name: String,
    /// The address its REST API and PostgreSQL listen on.
    pub host: String,
    /// The command prefix its agent runs under (see [`NodeHost::prefix`]).
    pub prefix: Vec<String>,
    /// REST API port.
    pub api: u16,
    /// PostgreSQL port.
    pub pg_port: u16,
    /// PostgreSQL data directory.
    pub data_dir: PathBuf,
    /// The agent's configuration file.
    pub cfg: PathBuf,
    /// The agent's log.
    pub log: PathBuf,
    /// The callback record (with [`AgentOpts::callbacks`]).
    pub calls: PathBuf,
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
    agent_bin: PathBuf,
    // Declared last: postmasters are stopped after the agents.
    pg: PgCluster,
}

impl AgentCluster {
    /// Start three agents of cluster `scope` on the store; `None` when PostgreSQL is missing (locally).
    pub fn start(scope: &str, store: &dyn Store) -> Option<AgentCluster> {
        AgentCluster::start_with(scope, store, AgentOpts::default())
    }

    /// [`AgentCluster::start`] with options.
    pub fn start_with(scope: &str, store: &dyn Store, opts: AgentOpts) -> Option<AgentCluster> {
        let bin = super::postgres::require_pg()?;
        let mut pg = PgCluster::new(scope, bin.clone());
        let q = |p: &std::path::Path| serde_json::to_string(&p.display().to_string()).expect("path as JSON");
        let cb = pg
            .script("callback.sh", "f=\"$(dirname \"$0\")/calls-$PRAETOR_TEST_NODE\"; echo \"$@\" >> \"$f\"");
        let callbacks = if opts.callbacks {
            format!(
                "  callbacks:\n    on_start: {c}\n    on_stop: {c}\n    on_role_change: {c}\n    on_restart: {c}\n    on_reload: {c}\n",
                c = q(&cb)
            )
        } else {
            String::new()
        };
        let n = if opts.nodes == 0 { 3 } else { opts.nodes };
        let mut nodes = Vec::new();
        for i in 0..n {
            let name = format!("pg{i}");
            let s = pg.node(&name);
            let home = s.data_dir.parent().expect("node home").to_path_buf();
            let place = opts
                .hosts
                .get(i)
                .cloned()
                .unwrap_or_else(|| NodeHost { pg_port: s.listen_hosts_port().1, ..NodeHost::loopback() });
            let (addr, api, pg_port, cidr) = (&place.addr, place.api_port, place.pg_port, &place.cidr);
            let cfg = pg.dir.join(format!("{name}.yml"));
            let yaml = format!(
                r#"scope: {scope}
name: {name}
restapi:
  listen: {addr}:{api}
  connect_address: {addr}:{api}
{restapi_extra}{dcs}
bootstrap:
  dcs:
    ttl: {TTL}
    loop_wait: {LOOP_WAIT}
    retry_timeout: 3
    maximum_lag_on_failover: 1048576
    failsafe_mode: {failsafe}
{dcs_extra}    postgresql:
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
  listen: {addr}:{pg_port}
  connect_address: {addr}:{pg_port}
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
    - host all all {cidr} scram-sha-256
    - host replication replicator {cidr} scram-sha-256
{callbacks}watchdog:
  mode: "off"
"#,
                dcs = store.yaml(),
                failsafe = opts.failsafe,
                dcs_extra = opts.dcs_extra,
                restapi_extra = opts.restapi_extra,
                data = q(&s.data_dir),
                bin = q(&bin),
                pgpass = q(&s.pgpass),
                home = q(&home),
            );
            std::fs::write(&cfg, yaml).expect("write the agent configuration");
            nodes.push(Node {
                log: pg.dir.join(format!("{name}.log")),
                calls: pg.dir.join(format!("calls-{name}")),
                name,
                host: place.addr.clone(),
                prefix: place.prefix.clone(),
                api,
                pg_port,
                data_dir: s.data_dir.clone(),
                cfg,
                agent: None,
            });
        }
        let http = reqwest::Client::builder().timeout(Duration::from_secs(2)).build().expect("http client");
        let agent_bin = opts.agent_bin.unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_praetor")));
        let mut c = AgentCluster { scope: scope.to_string(), nodes, http, agent_bin, pg };
        for i in 0..n {
            c.start_agent(i);
        }
        Some(c)
    }

    /// (Re)start node `i`'s agent.
    pub fn start_agent(&mut self, i: usize) {
        let n = &mut self.nodes[i];
        let mut cmd = super::command_in(&n.prefix, &self.agent_bin);
        cmd.arg(&n.cfg).env("RUST_LOG", "info,praetor::ha=debug").env("PRAETOR_TEST_NODE", &n.name);
        n.agent = Some(ChildGuard::spawn(&n.name, &mut cmd, &n.log));
    }

    /// Node `i`'s whole log.
    pub fn log(&self, i: usize) -> String {
        std::fs::read_to_string(&self.nodes[i].log).unwrap_or_default()
    }

    /// The callbacks node `i` ran, one `<action> <role> <scope>` a line.
    pub fn calls(&self, i: usize) -> Vec<String> {
        std::fs::read_to_string(&self.nodes[i].calls)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// `GET /patroni` of node `i`.
    pub async fn status(&self, i: usize) -> Option<Value> {
        let url = format!("http://{}:{}/patroni", self.nodes[i].host, self.nodes[i].api);
        self.http.get(url).send().await.ok()?.json().await.ok()
    }

    /// A query on node `i` as the superuser (bounded in time).
    pub async fn sql(&self, i: usize, q: &str) -> Result<Vec<tokio_postgres::SimpleQueryMessage>, String> {
        let mut c = tokio_postgres::Config::new();
        c.host(&self.nodes[i].host)
            .port(self.nodes[i].pg_port)
            .user("postgres")
            .password("su-secret")
            .dbname("postgres")
            .connect_timeout(Duration::from_secs(2));
        let (client, conn) = tokio::time::timeout(Duration::from_secs(3), c.connect(tokio_postgres::NoTls))
            .await
            .map_err(|_| "connect timed out".to_string())?
            .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        tokio::time::timeout(Duration::from_secs(5), client.simple_query(q))
            .await
            .map_err(|_| "query timed out".to_string())?
            .map_err(|e| e.to_string())
    }

    /// The first column of the first row of `q` on node `i`.
    /// The first column of `q`'s rows on node `i`, parsed as ids (the writers' tables).
    pub async fn ids(&self, i: usize, q: &str) -> Result<std::collections::BTreeSet<i64>, String> {
        let rows = self.sql(i, q).await?;
        Ok(rows
            .iter()
            .filter_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).and_then(|v| v.parse().ok()),
                _ => None,
            })
            .collect())
    }

    pub async fn scalar(&self, i: usize, q: &str) -> Option<String> {
        let rows = self.sql(i, q).await.ok()?;
        rows.iter().find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
            _ => None,
        })
    }

    /// Node `i` takes a write.
    pub async fn accepts_writes(&self, i: usize) -> bool {
        self.sql(i, "CREATE TABLE IF NOT EXISTS probe(x int); INSERT INTO probe VALUES (1)").await.is_ok()
    }

    /// SIGKILL node `i`'s postmaster (which must be running).
    pub fn kill_postmaster(&self, i: usize) {
        let pf = praetor::postgres::postmaster::PidFile::read(&self.nodes[i].data_dir)
            .ok()
            .flatten()
            .expect("postmaster.pid of a running node");
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pf.pid), nix::sys::signal::Signal::SIGKILL);
    }

    /// The last 40 lines of every agent's log, for assertion messages.
    pub fn logs(&self) -> String {
        (0..self.nodes.len())
            .map(|i| {
                let l = self.log(i);
                let tail: Vec<&str> = l.lines().rev().take(40).collect();
                format!(
                    "--- {} ---\n{}",
                    self.nodes[i].name,
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Indexes of the running primaries and of the streaming replicas, from `GET /patroni`.
    pub async fn roles(&self) -> (Vec<usize>, Vec<usize>) {
        self.roles_among(&(0..self.nodes.len()).collect::<Vec<_>>()).await
    }

    /// [`AgentCluster::roles`] among the nodes `among`.
    pub async fn roles_among(&self, among: &[usize]) -> (Vec<usize>, Vec<usize>) {
        let (mut p, mut s) = (Vec::new(), Vec::new());
        for &i in among {
            let Some(v) = self.status(i).await else { continue };
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
        let leader = super::Found::new();
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

    /// Wait until `among` has one running primary and every other node of `among` streams; the
    /// primary.
    pub async fn wait_primary_among(&self, among: &[usize], timeout: Duration) -> usize {
        let primary = super::Found::new();
        let ok = wait_for(timeout, || async {
            let (p, s) = self.roles_among(among).await;
            primary.set(p.first().copied());
            p.len() == 1 && s.len() + 1 == among.len()
        })
        .await;
        assert!(ok, "no healthy primary among {among:?} within {timeout:?}\n{}", self.logs());
        primary.get().expect("set when healthy")
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
        let new_leader = super::Found::new();
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
