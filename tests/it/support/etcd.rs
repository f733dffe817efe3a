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
    peer_port: u16,
    data_dir: PathBuf,
    log: PathBuf,
    process: Option<ChildGuard>,
}

impl Member {
    fn client_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    fn peer_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.peer_port)
    }
}

/// A running etcd (one member or a cluster). Dropping it stops every member.
pub struct EtcdServer {
    bin: PathBuf,
    members: Vec<Member>,
    token: String,
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
        let bin = require_bin(ETCD_BIN)?;
        let dir = TestDir::new("etcd");
        let members = (0..n)
            .map(|i| Member {
                name: format!("etcd{i}"),
                client_port: free_port(),
                peer_port: free_port(),
                data_dir: dir.join(format!("etcd{i}.data")),
                log: dir.join(format!("etcd{i}.log")),
                process: None,
            })
            .collect();
        let token = format!(
            "praetor-test-{}",
            dir.path().file_name().map_or_else(String::new, |f| f.to_string_lossy().into_owned())
        );
        let mut server = EtcdServer { bin, members, token, dir };
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
        let mut cmd = Command::new(&self.bin);
        cmd.arg("--name")
            .arg(&m.name)
            .arg("--data-dir")
            .arg(&m.data_dir)
            .arg("--listen-client-urls")
            .arg(m.client_url())
            .arg("--advertise-client-urls")
            .arg(m.client_url())
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
        let guard = ChildGuard::spawn(&m.name, &mut cmd, &m.log);
        self.members[i].process = Some(guard);
    }

    async fn wait_serving(&mut self, i: usize) {
        let url = format!("{}/health", self.members[i].client_url());
        let http = reqwest::Client::builder().timeout(Duration::from_secs(2)).build().expect("http client");
        let deadline = tokio::time::Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(r) = http.get(&url).send().await {
                if let Ok(body) = r.text().await {
                    if body.contains(r#""health":"true""#) {
                        return;
                    }
                }
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
        self.members.iter().map(|m| format!("127.0.0.1:{}", m.client_port)).collect()
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
