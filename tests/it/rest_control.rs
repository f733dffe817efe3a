//! The REST management endpoints end to end (PATRONI-COMPAT §3.4): Patroni 4.1.5's own
//! `patronictl` (from PyPI) drives three praetor agents on a real etcd with PostgreSQL 15, and a
//! scheduled restart survives an agent restart. Serial: the paths contain `cluster::`.

mod cluster {
    use crate::support::agents::{AgentCluster, BoxFut, Store};
    use crate::support::etcd::EtcdServer;
    use crate::support::{ChildGuard, wait_for};
    use serde_json::{Value, json};
    use std::path::{Path, PathBuf};
    use std::process::Command;
    use std::time::Duration;

    struct Etcd {
        server: EtcdServer,
    }

    impl Etcd {
        async fn get(&self, key: String) -> Option<String> {
            let mut c = self.server.client().await;
            let r = c.get(key, None).await.ok()?;
            r.kvs().first().map(|kv| String::from_utf8_lossy(kv.value()).to_string())
        }
    }

    impl Store for Etcd {
        fn yaml(&self) -> String {
            format!("etcd3:\n  hosts:\n    - {}\n", self.server.hosts()[0])
        }
        fn leader(&self, scope: &str) -> BoxFut<'_, Option<String>> {
            Box::pin(self.get(format!("/service/{scope}/leader")))
        }
        fn put_failover(&self, scope: &str, value: String) -> BoxFut<'_, ()> {
            let key = format!("/service/{scope}/failover");
            Box::pin(async move {
                let mut c = self.server.client().await;
                c.put(key, value, None).await.expect("put failover");
            })
        }
        fn failover(&self, scope: &str) -> BoxFut<'_, Option<String>> {
            Box::pin(self.get(format!("/service/{scope}/failover")))
        }
    }

    async fn patroni(c: &AgentCluster, i: usize) -> Value {
        let url = format!("http://127.0.0.1:{}/patroni", c.nodes[i].api);
        match c.http.get(url).send().await {
            Ok(r) => r.json().await.unwrap_or(Value::Null),
            Err(_) => Value::Null,
        }
    }

    /// `patronictl -c <cfg> args…` from the venv; (stdout+stderr, success).
    fn patronictl(venv: &Path, cfg: &Path, args: &[&str]) -> (String, bool) {
        let out = Command::new(venv.join("bin/patronictl"))
            .arg("-c")
            .arg(cfg)
            .args(args)
            .env_remove("PATRONICTL_CONFIG_FILE")
            .output()
            .expect("run patronictl");
        let text =
            format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        (text, out.status.success())
    }

    fn venv() -> Option<PathBuf> {
        crate::support::etcd::patroni_etcd3_python().and_then(|p| p.parent()?.parent().map(Path::to_path_buf))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn patronictl_drives_a_praetor_cluster() {
        let Some(server) = EtcdServer::start().await else { return };
        let Some(venv) = venv() else { return };
        let etcd = Etcd { server };
        let scope = "ctlmgmt";
        let Some(c) = AgentCluster::start(scope, &etcd) else { return };
        let leader = c.wait_healthy(&etcd, Duration::from_secs(120)).await;
        let cfg = c.dir().join("patronictl.yml");
        std::fs::write(&cfg, format!("scope: {scope}\n{}", etcd.yaml())).expect("write patronictl.yml");
        let ctl = |args: &[&str]| patronictl(&venv, &cfg, args);

        // list (the member keys follow the REST status by up to a loop: wait, bounded)
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let (out, ok) = loop {
            let (out, ok) = ctl(&["list"]);
            if (ok && out.matches("| streaming |").count() == 2) || std::time::Instant::now() > deadline {
                break (out, ok);
            }
            std::thread::sleep(Duration::from_millis(500));
        };
        assert!(ok, "{out}");
        for n in &c.nodes {
            assert!(out.contains(&format!("| {} ", n.name)), "{out}");
        }
        assert!(out.contains("| Leader ") && out.matches("| streaming |").count() == 2, "{out}");

        // switchover --force to a named candidate: patronictl waits for the result from the leader.
        let cand = (leader + 1) % 3;
        let (out, _) = ctl(&[
            "switchover",
            "--leader",
            &c.nodes[leader].name,
            "--candidate",
            &c.nodes[cand].name,
            "--force",
        ]);
        assert!(
            out.contains(&format!("Successfully switched over to \"{}\"", c.nodes[cand].name)),
            "{out}\n{}",
            c.logs()
        );
        assert_eq!(etcd.leader(scope).await.as_deref(), Some(c.nodes[cand].name.as_str()));
        let leader = c.wait_healthy(&etcd, Duration::from_secs(90)).await;
        assert_eq!(leader, cand, "the candidate leads after the switchover");

        // restart <scope> <member> --force: the postmaster start time changes.
        let replica = (leader + 1) % 3;
        let before = patroni(&c, replica).await["postmaster_start_time"].clone();
        assert!(before.is_string(), "{before}");
        let (out, _) = ctl(&["restart", scope, &c.nodes[replica].name, "--force"]);
        assert!(out.contains(&format!("Success: restart on member {}", c.nodes[replica].name)), "{out}");
        // The status is republished by the cycle after the restart task ends (≤ loop_wait).
        let changed = wait_for(Duration::from_secs(15), || async {
            let after = patroni(&c, replica).await["postmaster_start_time"].clone();
            after.is_string() && after != before
        })
        .await;
        assert!(changed, "postmaster start time still {before}\n{}", c.logs());

        // reinit <scope> <member> --force --wait: the replica is cloned again (a file we drop in
        // its data directory is gone) and streams again.
        let marker = c.nodes[replica].data_dir.join("praetor-reinit-marker");
        std::fs::write(&marker, "x").expect("write marker");
        let (out, _) = ctl(&["reinit", scope, &c.nodes[replica].name, "--force", "--wait"]);
        assert!(
            out.contains(&format!("Success: reinitialize for member {}", c.nodes[replica].name)),
            "{out}"
        );
        assert!(out.contains(&format!("Reinitialize is completed on: {}", c.nodes[replica].name)), "{out}");
        assert!(!marker.exists(), "the data directory was not cloned again\n{}", c.logs());
        c.wait_healthy(&etcd, Duration::from_secs(90)).await;

        // pause --wait / resume --wait: PATCH /config, then every member reports it.
        let (out, _) = ctl(&["pause", "--wait"]);
        assert!(out.contains("Success: cluster management is paused"), "{out}");
        for i in 0..3 {
            assert_eq!(patroni(&c, i).await["pause"], json!(true), "node {i}");
        }
        let (out, _) = ctl(&["resume", "--wait"]);
        assert!(out.contains("Success: cluster management is resumed"), "{out}");
        for i in 0..3 {
            assert!(patroni(&c, i).await.get("pause").is_none(), "node {i} still paused");
        }

        // edit-config -s ttl=20 --force (patronictl writes /config itself); GET /config shows it.
        let (out, ok) = ctl(&["edit-config", "-s", "ttl=20", "--force"]);
        assert!(ok, "{out}");
        let url = format!("http://127.0.0.1:{}/config", c.nodes[leader].api);
        let shown = wait_for(Duration::from_secs(10), || async {
            match c.http.get(&url).send().await {
                Ok(r) => r.json::<Value>().await.is_ok_and(|v| v["ttl"] == json!(20)),
                Err(_) => false,
            }
        })
        .await;
        assert!(
            shown,
            "GET /config does not show ttl=20: {:?}",
            etcd.get(format!("/service/{scope}/config")).await
        );
    }

    /// A restart scheduled through `POST /restart` is kept in a file next to the data directory:
    /// the agent killed and started again still restarts PostgreSQL at the scheduled time.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn scheduled_restart_survives_an_agent_restart() {
        let Some(server) = EtcdServer::start().await else { return };
        let etcd = Etcd { server };
        let scope = "schedrestart";
        let Some(mut c) = AgentCluster::start(scope, &etcd) else { return };
        let leader = c.wait_healthy(&etcd, Duration::from_secs(120)).await;
        let r = (leader + 1) % 3;
        let api = format!("http://127.0.0.1:{}", c.nodes[r].api);
        let post = |path: &str, body: Value| c.http.post(format!("{api}{path}")).json(&body).send();

        // Refusals and the delete path first.
        let resp = post("/restart", json!({"schedule": "2020-01-01T00:00:00+00:00"})).await.expect("post");
        assert_eq!(resp.status().as_u16(), 422);
        let far = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
        let resp = post("/restart", json!({"schedule": far})).await.expect("post");
        assert_eq!(resp.status().as_u16(), 202);
        let resp = post("/restart", json!({"schedule": far})).await.expect("post");
        assert_eq!(resp.status().as_u16(), 409);
        assert_eq!(resp.text().await.expect("body"), "Another restart is already scheduled");
        let del = c.http.delete(format!("{api}/restart")).send().await.expect("delete");
        assert_eq!(del.status().as_u16(), 200);
        let del = c.http.delete(format!("{api}/restart")).send().await.expect("delete");
        assert_eq!(
            (del.status().as_u16(), del.text().await.expect("body")),
            (404, "no restarts are scheduled".into())
        );

        // Schedule 40 s ahead, then kill the agent (PostgreSQL keeps running) and start it again.
        let before = patroni(&c, r).await["postmaster_start_time"].clone();
        let at = chrono::Utc::now() + chrono::Duration::seconds(40);
        let resp =
            post("/restart", json!({"schedule": at.to_rfc3339(), "role": "replica"})).await.expect("post");
        assert_eq!(resp.status().as_u16(), 202);
        let member_key = format!("/service/{scope}/members/{}", c.nodes[r].name);
        let published = wait_for(Duration::from_secs(10), || async {
            etcd.get(member_key.clone()).await.is_some_and(|v| v.contains("scheduled_restart"))
        })
        .await;
        assert!(published, "member key without scheduled_restart: {:?}", etcd.get(member_key.clone()).await);
        assert!(patroni(&c, r).await["scheduled_restart"]["schedule"].is_string());

        c.nodes[r].agent.as_mut().expect("agent").kill();
        let name = c.nodes[r].name.clone();
        let cfg = c.dir().join(format!("{name}.yml"));
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_praetor"));
        cmd.arg(&cfg).env("RUST_LOG", "info");
        c.nodes[r].agent = Some(ChildGuard::spawn(&name, &mut cmd, &c.dir().join(format!("{name}.log"))));

        let restored = wait_for(Duration::from_secs(30), || async {
            patroni(&c, r).await["scheduled_restart"]["schedule"].is_string()
        })
        .await;
        assert!(restored, "the restarted agent lost the scheduled restart\n{}", c.logs());
        assert_eq!(patroni(&c, r).await["postmaster_start_time"], before, "restarted too early");

        let restarted = wait_for(Duration::from_secs(90), || async {
            let s = patroni(&c, r).await;
            s["postmaster_start_time"].is_string()
                && s["postmaster_start_time"] != before
                && s.get("scheduled_restart").is_none()
        })
        .await;
        assert!(restarted, "the scheduled restart did not happen\n{}", c.logs());
        assert!(chrono::Utc::now() >= at, "restarted before the scheduled time");
        let cleared = wait_for(Duration::from_secs(10), || async {
            etcd.get(member_key.clone()).await.is_some_and(|v| !v.contains("scheduled_restart"))
        })
        .await;
        assert!(cleared, "member key still has scheduled_restart");
        c.wait_healthy(&etcd, Duration::from_secs(60)).await;

        // A scheduled switchover lives in the failover key and can be deleted.
        let lapi = format!("http://127.0.0.1:{}", c.nodes[leader].api);
        let later = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
        let resp = c
            .http
            .post(format!("{lapi}/switchover"))
            .json(&json!({"leader": c.nodes[leader].name, "scheduled_at": later}))
            .send()
            .await
            .expect("post");
        assert_eq!(
            (resp.status().as_u16(), resp.text().await.expect("body")),
            (202, "Switchover scheduled".into())
        );
        assert!(etcd.failover(scope).await.is_some_and(|v| v.contains("scheduled_at")));
        let del = c.http.delete(format!("{lapi}/switchover")).send().await.expect("delete");
        assert_eq!(del.status().as_u16(), 200);
        let del = c.http.delete(format!("{lapi}/switchover")).send().await.expect("delete");
        assert_eq!(del.status().as_u16(), 404);
        c.stop_all();
    }
}
