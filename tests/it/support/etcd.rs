//! A real etcd (3.4, `/usr/bin/etcd`) for tests: one member or a small cluster on free 127.0.0.1
//! ports, data in a [`TestDir`], stopped by PID when dropped (also on panic).

use super::{ChildGuard, TestDir, free_port, require_bin};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

/// Where Debian's `etcd-server` installs the binary.
pub const ETCD_BIN: &str = "/usr/bin/etcd";

/// How long a fresh etcd may take to serve.
const START_TIMEOUT: Duration = Duration::from_secs(30);

struct Member {
    name: String,
    client_port: u16,
    /// An extra https client listener (see [`EtcdServer::start_tls`]).
    tls_port: Option<u16>,
    peer_port: u16,
    /// The address it listens on (127.0.0.1, or its network namespace's address).
    host: String,
    data_dir: PathBuf,
    log: PathBuf,
    process: Option<ChildGuard>,
}

impl Member {
    fn client_url(&self) -> String {
        format!("http://{}:{}", self.host, self.client_port)
    }

    fn peer_url(&self) -> String {
        format!("http://{}:{}", self.host, self.peer_port)
    }
}

/// Certificates for a TLS test, made with the `openssl` command line tool.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    /// The test CA.
    pub ca: PathBuf,
    /// Server certificate for IP 127.0.0.1, signed by the CA.
    pub server_cert: PathBuf,
    /// Its key.
    pub server_key: PathBuf,
    /// Client certificate (CN `praetor`), signed by the CA.
    pub client_cert: PathBuf,
    /// Its key.
    pub client_key: PathBuf,
}

impl TlsFiles {
    /// A CA, a server and a client certificate in `dir`. `None` (skip) without `/usr/bin/openssl`.
    pub fn generate(dir: &TestDir) -> Option<TlsFiles> {
        let openssl = require_bin("/usr/bin/openssl")?;
        let f = |n: &str| dir.join(n);
        let run = |args: &[&str]| {
            let out =
                Command::new(&openssl).args(args).current_dir(dir.path()).output().expect("run openssl");
            assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        };
        run(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            "2",
            "-subj",
            "/CN=praetor-test-ca",
        ]);
        for (name, usage) in [("server", "serverAuth"), ("client", "clientAuth")] {
            let ext = f(&format!("{name}.ext"));
            std::fs::write(&ext, format!("subjectAltName=IP:127.0.0.1\nextendedKeyUsage={usage}\n"))
                .expect("write openssl extension file");
            let cn = format!("/CN={}", if name == "server" { "127.0.0.1" } else { "praetor" });
            let (key, csr, crt) = (format!("{name}.key"), format!("{name}.csr"), format!("{name}.crt"));
            run(&["req", "-newkey", "rsa:2048", "-nodes", "-keyout", &key, "-out", &csr, "-subj", &cn]);
            run(&[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                &crt,
                "-days",
                "2",
                "-extfile",
                &format!("{name}.ext"),
            ]);
        }
        Some(TlsFiles {
            ca: f("ca.crt"),
            server_cert: f("server.crt"),
            server_key: f("server.key"),
            client_cert: f("client.crt"),
            client_key: f("client.key"),
        })
    }
}

/// A running etcd (one member or a cluster). Dropping it stops every member.
pub struct EtcdServer {
    bin: PathBuf,
    /// Runs each member through this command (e.g. `ip netns exec <ns>`); empty: directly.
    prefix: Vec<String>,
    members: Vec<Member>,
    token: String,
    tls: Option<TlsFiles>,
    // Declared last: dropped after the processes are stopped.
    dir: TestDir,
}

impl EtcdServer {
    /// One etcd member, serving. `None` (skip) when etcd is not installed; panics in CI then.
    pub async fn start() -> Option<EtcdServer> {
        EtcdServer::start_cluster(1).await
    }

    /// An etcd cluster of `n` members, all serving with a leader elected. `None` when etcd is not
    /// installed (panics in CI).
    pub async fn start_cluster(n: usize) -> Option<EtcdServer> {
        EtcdServer::start_inner(n, false).await
    }

    /// One member that also serves https on [`EtcdServer::tls_hosts`], requiring a client
    /// certificate signed by the test CA ([`EtcdServer::tls_files`]). Plain http stays open for the
    /// harness and raw clients. `None` when etcd or openssl is missing (panics in CI).
    pub async fn start_tls() -> Option<EtcdServer> {
        EtcdServer::start_inner(1, true).await
    }

    /// One member listening on `host` (ports 2379 and 2380), run through `prefix` (for
    /// example [`super::netns::Net::prefix`]: inside a network namespace). The caller must reach
    /// `host` (see [`super::netns::Net::block_on`]). `None` when etcd is missing (panics in CI).
    pub async fn start_in(host: &str, prefix: Vec<String>) -> Option<EtcdServer> {
        EtcdServer::start_inner_at(1, false, Some((host, prefix))).await
    }

    async fn start_inner(n: usize, with_tls: bool) -> Option<EtcdServer> {
        EtcdServer::start_inner_at(n, with_tls, None).await
    }

    async fn start_inner_at(
        n: usize,
        with_tls: bool,
        place: Option<(&str, Vec<String>)>,
    ) -> Option<EtcdServer> {
        let bin = require_bin(ETCD_BIN)?;
        let dir = TestDir::new("etcd");
        let tls = if with_tls { Some(TlsFiles::generate(&dir)?) } else { None };
        let (host, prefix) =
            place.map_or_else(|| ("127.0.0.1".to_string(), Vec::new()), |(h, p)| (h.to_string(), p));
        let in_ns = !prefix.is_empty();
        let members = (0..n)
            .map(|i| Member {
                name: format!("etcd{i}"),
                client_port: if in_ns { 2379 } else { free_port() },
                tls_port: with_tls.then(free_port),
                peer_port: if in_ns { 2380 } else { free_port() },
                host: host.clone(),
                data_dir: dir.join(format!("etcd{i}.data")),
                log: dir.join(format!("etcd{i}.log")),
                process: None,
            })
            .collect();
        let token = format!(
            "praetor-test-{}",
            dir.path().file_name().map_or_else(String::new, |f| f.to_string_lossy().into_owned())
        );
        let mut server = EtcdServer { bin, prefix, members, token, tls, dir };
        for i in 0..n {
            server.spawn(i, "new");
        }
        for i in 0..n {
            server.wait_serving(i).await;
        }
        Some(server)
    }

    fn initial_cluster(&self) -> String {
        self.members.iter().map(|m| format!("{}={}", m.name, m.peer_url())).collect::<Vec<_>>().join(",")
    }

    fn spawn(&mut self, i: usize, state: &str) {
        let initial_cluster = self.initial_cluster();
        let m = &self.members[i];
        let mut client_urls = m.client_url();
        if let Some(p) = m.tls_port {
            client_urls = format!("{client_urls},https://{}:{p}", m.host);
        }
        let mut cmd = super::command_in(&self.prefix, &self.bin);
        cmd.arg("--name")
            .arg(&m.name)
            .arg("--data-dir")
            .arg(&m.data_dir)
            .arg("--listen-client-urls")
            .arg(&client_urls)
            .arg("--advertise-client-urls")
            .arg(&client_urls)
            .arg("--listen-peer-urls")
            .arg(m.peer_url())
            .arg("--initial-advertise-peer-urls")
            .arg(m.peer_url())
            .arg("--initial-cluster")
            .arg(initial_cluster)
            .arg("--initial-cluster-state")
            .arg(state)
            .arg("--initial-cluster-token")
            .arg(&self.token)
            .arg("--logger=zap")
            .arg("--log-outputs=stderr")
            // keep the environment of the test runner from configuring etcd
            .env_clear()
            .env("PATH", "/usr/bin:/bin");
        if let Some(t) = &self.tls {
            cmd.arg("--cert-file")
                .arg(&t.server_cert)
                .arg("--key-file")
                .arg(&t.server_key)
                .arg("--trusted-ca-file")
                .arg(&t.ca)
                .arg("--client-cert-auth");
        }
        let guard = ChildGuard::spawn(&m.name, &mut cmd, &m.log);
        self.members[i].process = Some(guard);
    }

    async fn wait_serving(&mut self, i: usize) {
        let url = format!("{}/health", self.members[i].client_url());
        let http = reqwest::Client::builder().timeout(Duration::from_secs(2)).build().expect("http client");
        let deadline = tokio::time::Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(r) = http.get(&url).send().await
                && let Ok(body) = r.text().await
                && body.contains(r#""health":"true""#)
            {
                return;
            }
            let m = &mut self.members[i];
            let p = m.process.as_mut().expect("member was spawned");
            if !p.is_running() {
                panic!("etcd member {} exited while starting\n{}", m.name, p.log_tail(4000));
            }
            if tokio::time::Instant::now() >= deadline {
                panic!("etcd member {} did not serve within {START_TIMEOUT:?}\n{}", m.name, p.log_tail(4000));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Client URLs of all members (`http://127.0.0.1:<port>`).
    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(Member::client_url).collect()
    }

    /// Client URL of the first member.
    pub fn endpoint(&self) -> String {
        self.members[0].client_url()
    }

    /// `host:port` of each member, as Patroni's `etcd3.hosts` lists them.
    pub fn hosts(&self) -> Vec<String> {
        self.members.iter().map(|m| format!("{}:{}", m.host, m.client_port)).collect()
    }

    /// `127.0.0.1:<port>` of each member's https listener (empty unless started with TLS).
    pub fn tls_hosts(&self) -> Vec<String> {
        self.members.iter().filter_map(|m| m.tls_port.map(|p| format!("{}:{p}", m.host))).collect()
    }

    /// The certificates of a TLS server.
    pub fn tls_files(&self) -> Option<&TlsFiles> {
        self.tls.as_ref()
    }

    /// The test directory holding data and logs.
    pub fn dir(&self) -> &TestDir {
        &self.dir
    }

    /// Kill member `i` (SIGKILL, as a crash). Its data stays for [`EtcdServer::restart_member`].
    pub fn kill_member(&mut self, i: usize) {
        if let Some(mut p) = self.members[i].process.take() {
            p.kill();
        }
    }

    /// Freeze member `i` (SIGSTOP): connections stay open, nothing answers. Undo with
    /// [`EtcdServer::thaw_member`]; dropping the server stops it either way.
    pub fn freeze_member(&self, i: usize) {
        if let Some(p) = &self.members[i].process {
            p.pause();
        }
    }

    /// Let a frozen member run again (SIGCONT).
    pub fn thaw_member(&self, i: usize) {
        if let Some(p) = &self.members[i].process {
            p.resume();
        }
    }

    /// Start member `i` again on its old ports and data, and wait until it serves.
    pub async fn restart_member(&mut self, i: usize) {
        assert!(self.members[i].process.is_none(), "member {i} is still running");
        self.spawn(i, "existing");
        self.wait_serving(i).await;
    }

    /// A plain etcd client on every member, as another tool (etcdctl, Patroni) would use.
    #[cfg(feature = "etcd")]
    pub async fn client(&self) -> etcd_client::Client {
        etcd_client::Client::connect(self.endpoints(), None).await.expect("connect a plain etcd client")
    }
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        for m in &mut self.members {
            if let Some(mut p) = m.process.take() {
                p.stop(Duration::from_secs(5));
            }
        }
    }
}

pub use super::patroni::PATRONI_VERSION;

/// A venv with `patroni[etcd3,psycopg3]==4.1.5`; returns its `python` (see [`super::patroni::venv`]).
pub fn patroni_etcd3_python() -> Option<PathBuf> {
    super::patroni::venv("etcd3", &[&format!("patroni[etcd3,psycopg3]=={PATRONI_VERSION}")])
        .map(|v| v.join("bin/python"))
}

/// An [`EtcdServer`] as the store of an [`super::agents::AgentCluster`]: keys read and written
/// directly with a plain etcd client (as patronictl's DCS fallback does).
#[cfg(feature = "etcd")]
pub struct EtcdStore {
    /// The server.
    pub server: EtcdServer,
    client: etcd_client::Client,
    /// The agents' DCS section when not their built-in `etcd3:` (a `plugin:` section).
    section: Option<String>,
}

#[cfg(feature = "etcd")]
impl EtcdStore {
    /// Start a one-member etcd; `None` when etcd is missing (panics in CI).
    pub async fn start() -> Option<EtcdStore> {
        let server = EtcdServer::start().await?;
        let client = server.client().await;
        Some(EtcdStore { server, client, section: None })
    }

    /// [`EtcdStore::start`] with the member on `host`, run through `prefix` (see
    /// [`EtcdServer::start_in`]).
    pub async fn start_in(host: &str, prefix: Vec<String>) -> Option<EtcdStore> {
        let server = EtcdServer::start_in(host, prefix).await?;
        let client = server.client().await;
        Some(EtcdStore { server, client, section: None })
    }

    /// The agents reach this etcd through the DCS plugin at `plugin` (a `plugin:` section).
    pub fn through_plugin(mut self, plugin: &std::path::Path) -> EtcdStore {
        self.section = Some(format!(
            "plugin:\n  path: {}\n  config:\n    hosts: [{}]\n",
            serde_json::to_string(&plugin.display().to_string()).expect("path as JSON"),
            self.server.hosts().join(", ")
        ));
        self
    }

    /// The value of `/service/<scope>/<k>` (a fresh client: members may have been restarted).
    pub async fn key(&self, scope: &str, k: &str) -> Option<String> {
        let mut c = self.server.client().await;
        let r = c.get(format!("/service/{scope}/{k}"), None).await.ok()?;
        r.kvs().first().map(|kv| String::from_utf8_lossy(kv.value()).into_owned())
    }

    /// Write `/service/<scope>/<k>`.
    pub async fn put(&self, scope: &str, k: &str, v: &str) {
        let mut c = self.server.client().await;
        c.put(format!("/service/{scope}/{k}"), v, None).await.expect("etcd put");
    }

    /// The `/sync` key as JSON.
    pub async fn sync_key(&self, scope: &str) -> Option<serde_json::Value> {
        serde_json::from_str(&self.key(scope, "sync").await?).ok()
    }

    /// Wait (60 s) until `/sync` names node `leader` of `c` and at least one standby; the standbys.
    pub async fn wait_sync_standby(&self, c: &super::agents::AgentCluster, leader: usize) -> Vec<String> {
        let names = std::sync::Mutex::new(Vec::new());
        let ok = super::wait_for(Duration::from_secs(60), || async {
            let Some(v) = self.sync_key(&c.scope).await else { return false };
            let standbys: Vec<String> = v["sync_standby"]
                .as_str()
                .unwrap_or("")
                .split(',')
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect();
            let ok = v["leader"] == c.nodes[leader].name.as_str() && !standbys.is_empty();
            *names.lock().unwrap_or_else(|p| p.into_inner()) = standbys;
            ok
        })
        .await;
        assert!(ok, "/sync never named a standby of {}\n{}", c.nodes[leader].name, c.logs());
        names.into_inner().unwrap_or_else(|p| p.into_inner())
    }

    async fn get(&self, key: String) -> Option<String> {
        let mut kv = self.client.kv_client();
        let r = kv.get(key, None).await.ok()?;
        r.kvs().first().map(|k| String::from_utf8_lossy(k.value()).to_string())
    }
}

#[cfg(feature = "etcd")]
impl super::agents::Store for EtcdStore {
    fn yaml(&self) -> String {
        if let Some(s) = &self.section {
            return s.clone();
        }
        format!(
            "etcd3:\n  hosts:\n{}",
            self.server.hosts().iter().map(|h| format!("    - {h}\n")).collect::<String>()
        )
    }
    fn leader(&self, scope: &str) -> super::agents::BoxFut<'_, Option<String>> {
        Box::pin(self.get(format!("/service/{scope}/leader")))
    }
    fn put_failover(&self, scope: &str, value: String) -> super::agents::BoxFut<'_, ()> {
        let key = format!("/service/{scope}/failover");
        Box::pin(async move {
            let mut kv = self.client.kv_client();
            kv.put(key, value, None).await.expect("write the failover key");
        })
    }
    fn failover(&self, scope: &str) -> super::agents::BoxFut<'_, Option<String>> {
        Box::pin(self.get(format!("/service/{scope}/failover")))
    }
}
