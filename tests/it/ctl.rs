//! praetorctl against output captured from real patronictl 4.1.5 (tests/fixtures/ctl, made by
//! `generate.py`): every case's raw DCS keys are read into a `Cluster` and every captured command is
//! rendered and compared byte for byte; one end-to-end run of the built binary against a real etcd.

use crate::support::etcd::EtcdServer;
use clap::Parser;
use praetor::ctl::{Cli, render};
use praetor::dcs::model::{Cluster, RawEntry, Version};
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// The clock generate.py pins patronictl to (`list -t`).
const FIXED_NOW: &str = "2026-11-22 03:04:05";

#[derive(Deserialize)]
struct Key {
    key: String,
    value: String,
}

#[derive(Deserialize)]
struct Case {
    args: Vec<String>,
    stdout: String,
    exit: u8,
    stderr: String,
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/ctl")
}

fn case_dirs() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(fixtures())
        .expect("tests/fixtures/ctl exists")
        .map(|e| e.expect("read fixture dir entry").path())
        .filter(|p| p.join("cases.json").is_file())
        .collect();
    dirs.sort();
    dirs
}

fn keys(dir: &Path) -> Vec<Key> {
    serde_json::from_slice(&std::fs::read(dir.join("keys.json")).expect("keys.json"))
        .expect("keys.json parses")
}

fn cluster(dir: &Path) -> Cluster {
    let entries = keys(dir).into_iter().map(|k| RawEntry {
        key: k.key,
        value: k.value,
        version: Version(1),
        owner: None,
    });
    let (c, warnings) = Cluster::from_entries(entries);
    assert!(warnings.is_empty(), "{}: {warnings:?}", dir.display());
    c
}

/// Every case × command: same stdout, same exit code, same `Error: …` line as patronictl.
#[test]
fn renderers_match_patronictl_byte_for_byte() {
    let dirs = case_dirs();
    assert!(dirs.len() >= 10, "fixtures missing: {dirs:?}");
    let mut failures = Vec::new();
    let mut checked = 0;
    for dir in dirs {
        let name = dir.file_name().and_then(|n| n.to_str()).expect("utf-8 case name").to_string();
        let cluster = cluster(&dir);
        let cases: Vec<Case> =
            serde_json::from_slice(&std::fs::read(dir.join("cases.json")).expect("cases.json"))
                .expect("parses");
        for case in cases {
            let want = std::fs::read_to_string(dir.join(&case.stdout)).expect("captured stdout");
            let cli = Cli::try_parse_from(
                std::iter::once("praetorctl".to_string()).chain(case.args.iter().cloned()),
            )
            .unwrap_or_else(|e| {
                panic!("{name} {:?}: praetorctl does not accept patronictl's args: {e}", case.args)
            });
            let (got, code, err) = match render(&cli.command, &name, &cluster, FIXED_NOW) {
                Ok(s) => (s, 0, String::new()),
                Err(e) => (String::new(), e.exit_code(), format!("Error: {e}\n")),
            };
            checked += 1;
            if got != want || code != case.exit || (case.exit != 0 && err != case.stderr) {
                failures.push(format!(
                    "== {name} {:?} (exit {code}, want {})\n--- patronictl\n{want}{}--- praetorctl\n{got}{err}",
                    case.args, case.exit, case.stderr
                ));
            }
        }
    }
    assert!(checked > 200, "only {checked} outputs checked");
    assert!(failures.is_empty(), "{} of {checked} outputs differ:\n{}", failures.len(), failures.join("\n"));
}

/// The binary reads the keys from a real etcd and prints what patronictl printed for them.
#[tokio::test]
async fn praetorctl_list_against_etcd_prints_what_patronictl_printed() {
    let Some(etcd) = EtcdServer::start().await else { return };
    let mut client = etcd.client().await;
    for case in ["extended", "paused", "healthy"] {
        for k in keys(&fixtures().join(case)) {
            client.put(format!("/service/{case}/{}", k.key), k.value, None).await.expect("put a key");
        }
    }
    let host = etcd.hosts()[0].clone();
    for (case, args, golden) in [
        ("extended", vec!["list"], "list.out"),
        ("paused", vec!["list"], "list.out"),
        ("healthy", vec!["list", "-f", "json"], "list-json.out"),
        ("healthy", vec!["topology"], "topology.out"),
        ("healthy", vec!["show-config"], "show-config.out"),
        ("healthy", vec!["dsn", "-m", "pg1"], "dsn-member.out"),
    ] {
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_praetorctl"))
            .arg("-d")
            .arg(format!("etcd3://{host}"))
            .args(&args)
            .arg(case)
            .env_remove("PATRONICTL_CONFIG_FILE")
            .env_remove("DCS_URL")
            .env("HOME", etcd.dir().path())
            .output()
            .await
            .expect("run praetorctl");
        let want = std::fs::read_to_string(fixtures().join(case).join(golden)).expect("golden");
        assert!(out.status.success(), "{case} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(String::from_utf8_lossy(&out.stdout), want, "{case} {args:?}");
    }

    // No -d and no cluster name: patronictl's default config file gives the DCS and `scope`; praetor's
    // own default file wins over it.
    let home = etcd.dir().path();
    let patroni_cfg = home.join(".config/patroni");
    std::fs::create_dir_all(&patroni_cfg).expect("mkdir");
    std::fs::write(patroni_cfg.join("patronictl.yaml"), format!("scope: healthy\netcd3:\n  hosts: {host}\n"))
        .expect("write patronictl.yaml");
    let plain = |extra_env: Option<(&str, &str)>| {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_praetorctl"));
        cmd.arg("list")
            .env_remove("PATRONICTL_CONFIG_FILE")
            .env_remove("DCS_URL")
            .env_remove("XDG_CONFIG_HOME");
        cmd.env("HOME", home);
        if let Some((k, v)) = extra_env {
            cmd.env(k, v);
        }
        cmd.output()
    };
    let out = plain(None).await.expect("run");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let want = std::fs::read_to_string(fixtures().join("healthy/list.out")).expect("golden");
    assert_eq!(String::from_utf8_lossy(&out.stdout), want);
    let praetor_cfg = home.join(".config/praetor");
    std::fs::create_dir_all(&praetor_cfg).expect("mkdir");
    std::fs::write(praetor_cfg.join("praetorctl.yaml"), format!("scope: paused\netcd3:\n  hosts: {host}\n"))
        .expect("write praetorctl.yaml");
    let out = plain(None).await.expect("run");
    let want = std::fs::read_to_string(fixtures().join("paused/list.out")).expect("golden");
    assert_eq!(String::from_utf8_lossy(&out.stdout), want);
    // PATRONICTL_CONFIG_FILE names the file; a missing one is an error, not a fallback
    let out = plain(Some(("PATRONICTL_CONFIG_FILE", "/nonexistent/ctl.yaml"))).await.expect("run");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not existing or no read rights"));

    // `-w SECS` redraws until Ctrl-C, which ends it cleanly; no screen clearing when stdout is a pipe
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_praetorctl"))
        .args(["-d", &format!("etcd3://{host}"), "list", "-w", "0.2", "healthy"])
        .env_remove("PATRONICTL_CONFIG_FILE")
        .env_remove("DCS_URL")
        .env("HOME", home)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn praetorctl -w");
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let pid = nix::unistd::Pid::from_raw(child.id().expect("running") as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).expect("send SIGINT");
    let out = tokio::time::timeout(std::time::Duration::from_secs(10), child.wait_with_output())
        .await
        .expect("praetorctl -w stops on SIGINT")
        .expect("wait");
    assert_eq!(out.status.code(), Some(0));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let once = std::fs::read_to_string(fixtures().join("healthy/list.out")).expect("golden");
    assert!(stdout.matches(&once).count() >= 3, "expected several refreshes:\n{stdout}");
    assert!(!stdout.contains('\x1b'));

    // patronictl's exit codes: 1 when nothing matches, 2 for a usage error
    let run = |args: Vec<String>| {
        tokio::process::Command::new(env!("CARGO_BIN_EXE_praetorctl"))
            .args(args)
            .env_remove("PATRONICTL_CONFIG_FILE")
            .env_remove("DCS_URL")
            .env("HOME", etcd.dir().path())
            .output()
    };
    let dcs = format!("etcd3://{host}");
    let out =
        run(vec!["-d".into(), dcs.clone(), "dsn".into(), "-m".into(), "nosuch".into(), "healthy".into()])
            .await
            .expect("run");
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(String::from_utf8_lossy(&out.stderr), "Error: Can not find a suitable member\n");
    let out = run(vec!["-d".into(), dcs, "list".into(), "-f".into(), "xml".into()]).await.expect("run");
    assert_eq!(out.status.code(), Some(2));
    let out = run(vec!["-d".into(), "foo://x".into(), "list".into(), "c".into()]).await.expect("run");
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(String::from_utf8_lossy(&out.stderr), "Error: Unknown dcs scheme: foo\n");
}

/// The same keys in ZooKeeper (`-d zookeeper://…`) print the same table: rendering does not depend on
/// the store.
#[cfg(feature = "zookeeper")]
#[tokio::test]
async fn praetorctl_list_against_zookeeper_prints_what_patronictl_printed() {
    use crate::support::zookeeper::{ZooKeeperServer, raw_put};
    let Some(zk) = ZooKeeperServer::start().await else { return };
    let client = zk.client().await;
    for k in keys(&fixtures().join("extended")) {
        raw_put(&client, &format!("/service/extended/{}", k.key), &k.value).await;
    }
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_praetorctl"))
        .args(["-d", &format!("zookeeper://{}", zk.host()), "list", "extended"])
        .env_remove("PATRONICTL_CONFIG_FILE")
        .env_remove("DCS_URL")
        .env("HOME", zk.dir().path())
        .output()
        .await
        .expect("run praetorctl");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let want = std::fs::read_to_string(fixtures().join("extended/list.out")).expect("golden");
    assert_eq!(String::from_utf8_lossy(&out.stdout), want);
}

/// And in Consul (`-d consul://…`, here the Consul API model).
#[cfg(feature = "consul")]
#[tokio::test]
async fn praetorctl_list_against_consul_prints_what_patronictl_printed() {
    let server = crate::support::consul::start_model(crate::support::consul::fast_options()).await;
    let url = server.url();
    let http = reqwest::Client::new();
    for k in keys(&fixtures().join("paused")) {
        let r = http
            .put(format!("{url}/v1/kv/service/paused/{}", k.key))
            .body(k.value)
            .send()
            .await
            .expect("put");
        assert!(r.status().is_success(), "{}", r.status());
    }
    let hostport = url.trim_start_matches("http://").to_string();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_praetorctl"))
        .args(["-d", &format!("consul://{hostport}"), "list", "paused"])
        .env_remove("PATRONICTL_CONFIG_FILE")
        .env_remove("DCS_URL")
        .env("HOME", std::env::temp_dir())
        .output()
        .await
        .expect("run praetorctl");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let want = std::fs::read_to_string(fixtures().join("paused/list.out")).expect("golden");
    assert_eq!(String::from_utf8_lossy(&out.stdout), want);
}

/// praetorctl pointed at a cluster run by real Patroni 4.1.5 prints exactly what patronictl prints.
mod cluster {
    use super::*;
    use crate::support::postgres::PgCluster;
    use crate::support::zookeeper::{PATRONI_VERSION, ZooKeeperServer};
    use crate::support::{ChildGuard, free_port};
    use std::process::Command;
    use std::time::{Duration, Instant};

    /// A venv of the system Python (readable by the `postgres` user, unlike a pyenv under /root)
    /// with Patroni 4.1.5 for ZooKeeper and a psycopg2 driver. Built once per target dir.
    fn system_patroni_venv() -> Option<PathBuf> {
        crate::support::patroni::venv(
            "system",
            &[&format!("patroni[zookeeper]=={PATRONI_VERSION}"), "psycopg2-binary"],
        )
    }

    fn patroni_yaml(name: &str, home: &Path, pg_port: u16, api_port: u16, zk: &str) -> String {
        format!(
            "scope: ctlreal\nname: {name}\n\
             restapi:\n  listen: 127.0.0.1:{api_port}\n  connect_address: 127.0.0.1:{api_port}\n\
             zookeeper:\n  hosts: ['{zk}']\n\
             bootstrap:\n  dcs:\n    ttl: 30\n    loop_wait: 1\n    retry_timeout: 10\n    \
             postgresql:\n      parameters:\n        max_connections: 20\n  \
             initdb: [{{encoding: UTF8}}, {{locale: C}}]\n\
             tags:\n  zone: a\n\
             postgresql:\n  listen: 127.0.0.1:{pg_port}\n  connect_address: 127.0.0.1:{pg_port}\n  \
             data_dir: {home}/data\n  bin_dir: /usr/lib/postgresql/15/bin\n  pgpass: {home}/pgpass\n  \
             authentication:\n    superuser: {{username: postgres, password: su}}\n    \
             replication: {{username: replicator, password: rep}}\n  \
             parameters:\n    unix_socket_directories: {home}\n    shared_buffers: 16MB\n    fsync: 'off'\n  \
             pg_hba:\n  - local all all trust\n  - host all all 127.0.0.1/32 trust\n  \
             - host replication replicator 127.0.0.1/32 trust\n",
            home = home.display()
        )
    }

    fn output(cmd: &mut Command) -> (bool, String, String) {
        let out = cmd.output().unwrap_or_else(|e| panic!("run {cmd:?}: {e}"));
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn praetorctl_shows_a_real_patroni_cluster_like_patronictl() {
        let bin = crate::require_pg!();
        let Some(zk) = ZooKeeperServer::start().await else { return };
        let Some(venv) = system_patroni_venv() else { return };
        let mut pg = PgCluster::new("ctl-patroni", bin);
        let dcs = format!("zookeeper://{}", zk.host());
        let mut agents = Vec::new();
        for name in ["pg0", "pg1"] {
            let s = pg.node(name);
            let home = s.data_dir.parent().expect("node dir").to_path_buf();
            let cfg = home.join("patroni.yml");
            let yaml = patroni_yaml(name, &home, free_port(), free_port(), &zk.host());
            std::fs::write(&cfg, yaml).expect("write patroni.yml");
            let mut cmd = Command::new("runuser");
            cmd.args(["-u", "postgres", "--"]).arg(venv.join("bin/patroni")).arg(&cfg);
            agents.push(ChildGuard::spawn(
                &format!("patroni-{name}"),
                &mut cmd,
                &pg.dir.join(format!("{name}.log")),
            ));
            if name == "pg0" {
                tokio::time::sleep(Duration::from_secs(3)).await; // let pg0 win the bootstrap race
            }
        }
        let patronictl = |args: &[&str]| {
            let mut c = Command::new(venv.join("bin/patronictl"));
            c.args(["-d", &dcs]).args(args).env("HOME", pg.dir.path()).env_remove("PATRONICTL_CONFIG_FILE");
            output(&mut c)
        };
        let praetorctl = |args: &[&str]| {
            let mut c = Command::new(env!("CARGO_BIN_EXE_praetorctl"));
            c.args(["-d", &dcs]).args(args).env("HOME", pg.dir.path()).env_remove("PATRONICTL_CONFIG_FILE");
            output(&mut c)
        };

        // Wait until pg0 leads and pg1 streams.
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let (_, tsv, _) = patronictl(&["list", "-f", "tsv", "ctlreal"]);
            if tsv.contains("\tpg0\t")
                && tsv.contains("Leader\trunning")
                && tsv.contains("Replica\tstreaming")
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "cluster did not come up:\n{tsv}\n{}\n{}",
                agents[0].log_tail(3000),
                agents[1].log_tail(3000)
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }

        let (_, list, _) = praetorctl(&["list", "ctlreal"]);
        assert!(list.contains("| pg0 ") && list.contains("| Leader ") && list.contains("| pg1 "), "{list}");
        assert!(list.contains("| streaming |"), "{list}");

        for args in [
            &["list", "ctlreal"][..],
            &["list", "-e", "ctlreal"],
            &["list", "-f", "json", "ctlreal"],
            &["list", "-e", "-f", "yaml", "ctlreal"],
            &["topology", "ctlreal"],
            &["history", "ctlreal"],
            &["show-config", "ctlreal"],
            &["dsn", "-r", "replica", "ctlreal"],
        ] {
            // The members' keys are refreshed every loop_wait; compare a few times so a refresh
            // between the two reads cannot make the test flaky.
            let mut last = String::new();
            let mut same = false;
            for _ in 0..10 {
                let (ok_p, want, err_p) = patronictl(args);
                let (ok_r, got, err_r) = praetorctl(args);
                assert!(ok_p, "patronictl {args:?}: {err_p}");
                assert!(ok_r, "praetorctl {args:?}: {err_r}");
                if want == got {
                    same = true;
                    break;
                }
                last = format!("--- patronictl\n{want}--- praetorctl\n{got}");
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            assert!(same, "{args:?} differs:\n{last}");
        }
        for a in &mut agents {
            a.stop(Duration::from_secs(30));
        }
    }
}

/// praetorctl driving a real three-node praetor cluster on etcd (PATRONI-COMPAT §4.2 data paths:
/// REST for switchover/failover/restart/reinit/pause, DCS for list/edit-config/show-config).
mod praetor_cluster {
    use crate::support::agents::{AgentCluster, BoxFut, Store};
    use crate::support::etcd::EtcdServer;
    use crate::support::wait_for;
    use serde_json::Value;
    use std::path::{Path, PathBuf};
    use std::time::Duration;

    struct Etcd {
        server: EtcdServer,
    }

    impl Store for Etcd {
        fn yaml(&self) -> String {
            format!("etcd3:\n  hosts: {}\n", self.server.hosts().join(","))
        }
        fn leader(&self, scope: &str) -> BoxFut<'_, Option<String>> {
            let key = format!("/service/{scope}/leader");
            Box::pin(async move { get(&self.server, &key).await })
        }
        fn put_failover(&self, scope: &str, value: String) -> BoxFut<'_, ()> {
            let key = format!("/service/{scope}/failover");
            Box::pin(async move {
                self.server.client().await.put(key, value, None).await.expect("put failover");
            })
        }
        fn failover(&self, scope: &str) -> BoxFut<'_, Option<String>> {
            let key = format!("/service/{scope}/failover");
            Box::pin(async move { get(&self.server, &key).await })
        }
    }

    async fn get(server: &EtcdServer, key: &str) -> Option<String> {
        let r = server.client().await.get(key, None).await.ok()?;
        r.kvs().first().map(|kv| String::from_utf8_lossy(kv.value()).into_owned())
    }

    struct Ctl {
        cfg: PathBuf,
        home: PathBuf,
    }

    impl Ctl {
        /// Run praetorctl with stdin closed; (exit code, stdout, stderr).
        async fn run(&self, args: &[&str]) -> (i32, String, String) {
            let fut = tokio::process::Command::new(env!("CARGO_BIN_EXE_praetorctl"))
                .arg("-c")
                .arg(&self.cfg)
                .args(args)
                .env_remove("PATRONICTL_CONFIG_FILE")
                .env_remove("DCS_URL")
                .env("HOME", &self.home)
                .stdin(std::process::Stdio::null())
                .output();
            let out = tokio::time::timeout(Duration::from_secs(120), fut)
                .await
                .unwrap_or_else(|_| panic!("praetorctl {args:?} did not finish in 120 s"))
                .expect("run praetorctl");
            (
                out.status.code().unwrap_or(-1),
                String::from_utf8_lossy(&out.stdout).into_owned(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            )
        }

        async fn ok(&self, args: &[&str], c: &AgentCluster) -> String {
            let (code, out, err) = self.run(args).await;
            assert_eq!(code, 0, "praetorctl {args:?} failed\nstdout:\n{out}\nstderr:\n{err}\n{}", c.logs());
            out
        }
    }

    async fn status(c: &AgentCluster, i: usize) -> Value {
        let url = format!("http://127.0.0.1:{}/patroni", c.nodes[i].api);
        match c.http.get(url).send().await {
            Ok(r) => r.json().await.unwrap_or(Value::Null),
            Err(_) => Value::Null,
        }
    }

    async fn new_leader(c: &AgentCluster, store: &Etcd, not: usize) -> usize {
        let found = std::cell::Cell::new(None);
        let ok = wait_for(Duration::from_secs(90), || async {
            let (p, s) = c.roles().await;
            let l = p.first().copied().filter(|l| *l != not && p.len() == 1);
            found.set(l);
            match l {
                Some(l) => {
                    s.len() == 2 && store.leader(&c.scope).await.as_deref() == Some(c.nodes[l].name.as_str())
                }
                None => false,
            }
        })
        .await;
        assert!(ok, "no new healthy leader other than {}\n{}", c.nodes[not].name, c.logs());
        found.get().expect("set")
    }

    fn write_cfg(dir: &Path, scope: &str, store: &Etcd) -> PathBuf {
        let p = dir.join("praetorctl.yaml");
        std::fs::write(&p, format!("scope: {scope}\n{}", store.yaml())).expect("write praetorctl.yaml");
        p
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn praetorctl_drives_a_praetor_cluster() {
        let Some(server) = EtcdServer::start().await else { return };
        let store = Etcd { server };
        let Some(mut c) = AgentCluster::start("ctlha", &store) else { return };
        let leader = c.wait_healthy(&store, Duration::from_secs(120)).await;
        let ctl = Ctl { cfg: write_cfg(c.dir(), "ctlha", &store), home: c.dir().to_path_buf() };

        // list (DCS): title, one leader, two streaming replicas (the member keys follow the REST
        // status by up to a loop)
        let streaming = wait_for(Duration::from_secs(30), || async {
            ctl.run(&["list"]).await.1.matches(" streaming ").count() == 2
        })
        .await;
        assert!(streaming, "list never showed two streaming replicas");
        let out = ctl.ok(&["list"], &c).await;
        assert!(out.starts_with("+ Cluster: ctlha ("), "{out}");
        assert_eq!(out.matches("| Leader ").count(), 1, "{out}");
        assert_eq!(out.matches(" streaming ").count(), 2, "{out}");

        // switchover --force (REST POST /switchover to the leader; candidate chosen by the cluster)
        let out = ctl.ok(&["switchover", "--force"], &c).await;
        assert!(out.starts_with("Current cluster topology\n"), "{out}");
        let l2 = new_leader(&c, &store, leader).await;

        // failover --candidate (REST POST /failover)
        let cand = (0..3).find(|i| *i != l2).expect("a replica");
        let out = ctl.ok(&["failover", "--candidate", &c.nodes[cand].name, "--force"], &c).await;
        assert!(out.contains(&format!("Successfully failed over to \"{}\"", c.nodes[cand].name)), "{out}");
        let l3 = new_leader(&c, &store, l2).await;
        assert_eq!(l3, cand);

        // restart one member (REST POST /restart): a new postmaster start time
        let r = (0..3).find(|i| *i != l3).expect("a replica");
        let before = status(&c, r).await["postmaster_start_time"].clone();
        let out = ctl.ok(&["restart", "ctlha", &c.nodes[r].name, "--force"], &c).await;
        assert!(out.contains(&format!("Success: restart on member {}", c.nodes[r].name)), "{out}");
        let restarted = wait_for(Duration::from_secs(60), || async {
            let s = status(&c, r).await;
            s["state"] == "running"
                && !s["postmaster_start_time"].is_null()
                && s["postmaster_start_time"] != before
        })
        .await;
        assert!(restarted, "postmaster of {} not restarted\n{}", c.nodes[r].name, c.logs());

        // reinit --wait (REST POST /reinitialize, then polls GET /patroni)
        let out = ctl.ok(&["reinit", "ctlha", &c.nodes[r].name, "--force", "--wait"], &c).await;
        assert!(out.contains(&format!("Success: reinitialize for member {}", c.nodes[r].name)), "{out}");
        assert!(out.contains(&format!("Reinitialize is completed on: {}", c.nodes[r].name)), "{out}");
        let back = wait_for(Duration::from_secs(90), || async { c.roles().await.1.contains(&r) }).await;
        assert!(back, "{} does not stream after reinit\n{}", c.nodes[r].name, c.logs());

        // pause --wait / resume --wait (REST PATCH /config, then the members' pause flags in the DCS)
        let out = ctl.ok(&["pause", "--wait"], &c).await;
        assert!(out.ends_with("Success: cluster management is paused\n"), "{out}");
        assert!(ctl.ok(&["list"], &c).await.contains(" Maintenance mode: on"));
        let (code, _, err) = ctl.run(&["pause"]).await;
        assert_eq!((code, err.as_str()), (1, "Error: Cluster is already paused\n"));
        let out = ctl.ok(&["resume", "--wait"], &c).await;
        assert!(out.ends_with("Success: cluster management is resumed\n"), "{out}");
        assert!(!ctl.ok(&["list"], &c).await.contains("Maintenance mode"));

        // edit-config -s ttl=20 --force (DCS CAS on /config) and show-config
        let out = ctl.ok(&["edit-config", "-s", "ttl=20", "--force"], &c).await;
        assert!(out.contains("-ttl: 10\n+ttl: 20\n"), "{out}");
        assert!(out.ends_with("Configuration changed\n"), "{out}");
        let out = ctl.ok(&["show-config"], &c).await;
        assert!(out.contains("\nttl: 20\n"), "{out}");
        let (code, out, _) = ctl.run(&["edit-config", "-s", "ttl=20", "--force"]).await;
        assert_eq!((code, out.as_str()), (0, "Not changed\n"));

        // why: every member reports its last decision
        let out = ctl.ok(&["why"], &c).await;
        for n in &c.nodes {
            assert!(out.contains(&format!("| {} ", n.name)), "{out}");
        }
        assert!(out.contains("the leader with the lock"), "{out}");

        // usage errors exit 2, refused actions 1
        assert_eq!(ctl.run(&["switchover", "--bogus"]).await.0, 2);
        let (code, _, err) = ctl.run(&["failover", "--candidate", "nobody", "--force"]).await;
        assert_eq!(code, 1);
        assert!(err.contains("Member nobody does not exist in cluster ctlha"), "{err}");
        c.stop_all();
    }
}
