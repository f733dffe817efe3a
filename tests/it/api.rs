//! The REST API against a real cluster (three agents, real etcd and PostgreSQL 15): health checks
//! keep answering from the published status while PostgreSQL or the DCS is frozen, and a real
//! HAProxy with the shipped `config/haproxy.cfg` routes writes to the leader and reads to replicas,
//! following a switchover. Serial: the paths contain `cluster::`. Also: the shipped Prometheus
//! configuration and alert rules pass `promtool` (syntax and the rule unit tests).

use crate::support::require_bin;
use std::process::Command;

/// `config/prometheus/`: the scrape configuration is valid and the alert rules fire as their unit
/// tests (`praetor-alerts.test.yml`: no leader, replication lag, agent down) expect.
#[test]
fn shipped_prometheus_config_and_alert_rules_pass_promtool() {
    let Some(promtool) = require_bin("/usr/bin/promtool") else { return };
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/config/prometheus");
    for args in [&["check", "config", "prometheus.yml"][..], &["test", "rules", "praetor-alerts.test.yml"]] {
        let out = Command::new(&promtool).args(args).current_dir(dir).output().expect("run promtool");
        assert!(
            out.status.success(),
            "promtool {args:?} failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

mod cluster {
    use crate::support::agents::{AgentCluster, AgentOpts};
    use crate::support::etcd::EtcdStore;
    use crate::support::{ChildGuard, TestDir, free_port, require_bin, wait_for};
    use std::process::Command;
    use std::time::{Duration, Instant};

    /// Freezes a process group with SIGSTOP and thaws it when dropped (also on panic).
    struct Frozen(nix::unistd::Pid);

    impl Frozen {
        fn group_of(pid: i32) -> Frozen {
            let pgid = nix::unistd::getpgid(Some(nix::unistd::Pid::from_raw(pid))).expect("process group");
            nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGSTOP).expect("SIGSTOP");
            Frozen(pgid)
        }
    }

    impl Drop for Frozen {
        fn drop(&mut self) {
            let _ = nix::sys::signal::killpg(self.0, nix::sys::signal::Signal::SIGCONT);
        }
    }

    /// GET `url` `n` times; (codes seen, latencies sorted ascending).
    async fn sample(http: &reqwest::Client, url: &str, n: usize) -> (Vec<u16>, Vec<Duration>) {
        let (mut codes, mut took) = (Vec::new(), Vec::new());
        for _ in 0..n {
            let t = Instant::now();
            let r = http.get(url).send().await.unwrap_or_else(|e| panic!("GET {url} failed: {e}"));
            let code = r.status().as_u16();
            let _ = r.bytes().await;
            took.push(t.elapsed());
            codes.push(code);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        took.sort();
        (codes, took)
    }

    fn pct(took: &[Duration], p: usize) -> Duration {
        took[(took.len() * p / 100).min(took.len() - 1)]
    }

    /// Health checks answer from the published status: with the leader's PostgreSQL frozen
    /// (SIGSTOP on the postmaster's whole process group) and then with etcd frozen, `/primary`,
    /// `/health`, `/patroni` answer within 50 ms with the last known state.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn health_checks_answer_within_50ms_while_postgres_or_etcd_is_frozen() {
        let Some(store) = EtcdStore::start().await else { return };
        let Some(mut c) = AgentCluster::start("apifreeze", &store) else { return };
        let leader = c.wait_healthy(&store, Duration::from_secs(120)).await;
        let api = c.nodes[leader].api;
        let http = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().expect("client");
        let pid = praetor::postgres::postmaster::PidFile::read(&c.nodes[leader].data_dir)
            .expect("read postmaster.pid")
            .expect("postmaster.pid")
            .pid;

        let mut report = Vec::new();
        {
            let _frozen = Frozen::group_of(pid);
            // Let the HA loop run into the frozen server first.
            tokio::time::sleep(Duration::from_millis(1500)).await;
            for (path, want) in [("/primary", 200), ("/health", 200), ("/patroni", 200)] {
                let (codes, took) = sample(&http, &format!("http://127.0.0.1:{api}{path}"), 20).await;
                assert!(
                    codes.iter().all(|c| *c == want),
                    "{path} with PostgreSQL frozen: {codes:?}\n{}",
                    c.logs()
                );
                report.push(format!(
                    "pg frozen {path}: p50 {:?} p90 {:?} max {:?}",
                    pct(&took, 50),
                    pct(&took, 90),
                    pct(&took, 100)
                ));
                assert!(
                    pct(&took, 90) < Duration::from_millis(50),
                    "{path} slow with PostgreSQL frozen: {took:?}"
                );
                assert!(pct(&took, 100) < Duration::from_millis(500), "{path} stalled: {took:?}");
            }
        }
        c.wait_healthy(&store, Duration::from_secs(60)).await;

        store.server.freeze_member(0);
        tokio::time::sleep(Duration::from_millis(1500)).await;
        for path in ["/primary", "/health", "/patroni", "/replica", "/read-only"] {
            let (codes, took) = sample(&http, &format!("http://127.0.0.1:{api}{path}"), 10).await;
            assert!(codes.iter().all(|c| *c == 200 || *c == 503), "{path} with etcd frozen: {codes:?}");
            report.push(format!(
                "etcd frozen {path}: p50 {:?} p90 {:?} max {:?}",
                pct(&took, 50),
                pct(&took, 90),
                pct(&took, 100)
            ));
            assert!(pct(&took, 90) < Duration::from_millis(50), "{path} slow with etcd frozen: {took:?}");
            assert!(pct(&took, 100) < Duration::from_millis(500), "{path} stalled: {took:?}");
        }
        store.server.thaw_member(0);
        eprintln!("{}", report.join("\n"));
        c.stop_all();
    }

    const PSQL: &str = "/usr/lib/postgresql/15/bin/psql";

    /// `pg_is_in_recovery()` and the port of the server reached through 127.0.0.1:`port`.
    fn whoami(port: u16) -> Option<(bool, u16)> {
        let out = Command::new(PSQL)
            .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", "postgres", "-d", "postgres", "-XAtq"])
            .args(["-c", "select pg_is_in_recovery()::text || ' ' || current_setting('port')"])
            .env("PGPASSWORD", "su-secret")
            .env("PGCONNECT_TIMEOUT", "3")
            .output()
            .ok()?;
        let s = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let (rec, port) = s.split_once(' ')?;
        Some((rec == "true", port.parse().ok()?))
    }

    /// `GET /metrics` of node `i`.
    async fn metrics_of(c: &AgentCluster, i: usize) -> String {
        let url = format!("http://127.0.0.1:{}/metrics", c.nodes[i].api);
        c.http.get(url).send().await.expect("GET /metrics").text().await.expect("metrics body")
    }

    /// `config/haproxy.cfg` with its listener ports and backend servers replaced by the test's.
    fn haproxy_cfg(c: &AgentCluster, ports: &[(u16, u16)]) -> String {
        let shipped = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/haproxy.cfg"))
            .expect("read config/haproxy.cfg");
        let mut out = String::new();
        for line in shipped.lines() {
            let t = line.trim_start();
            let mut l = line.to_string();
            if let Some(rest) = t.strip_prefix("bind 127.0.0.1:") {
                let port: u16 = rest.trim().parse().expect("bind port");
                let (_, to) = ports.iter().find(|(from, _)| *from == port).expect("a mapped port");
                l = format!("    bind 127.0.0.1:{to}");
            } else if let Some(rest) = t.strip_prefix("server pg") {
                let i: usize =
                    rest.split_whitespace().next().and_then(|n| n.parse().ok()).expect("server index");
                let n = &c.nodes[i];
                l = format!("    server {} 127.0.0.1:{} maxconn 100 check port {}", n.name, n.pg_port, n.api);
            }
            out.push_str(&l);
            out.push('\n');
        }
        out
    }

    /// HAProxy (Debian) with the shipped configuration: the write port reaches the leader, the
    /// read port a replica, the read-any port some node; after a switchover the write port
    /// reaches the new leader within HAProxy's check timing (inter 1 s, rise 2, fall 2) + margin.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn haproxy_routes_writes_to_the_leader_and_follows_a_switchover() {
        let Some(haproxy) = require_bin("/usr/sbin/haproxy") else { return };
        let Some(store) = EtcdStore::start().await else { return };
        let Some(c) = AgentCluster::start("apihaproxy", &store) else { return };
        let leader = c.wait_healthy(&store, Duration::from_secs(120)).await;
        let (w, r, ra, stats) = (free_port(), free_port(), free_port(), free_port());
        let dir = TestDir::new("haproxy_routes_writes");
        let cfg = dir.join("haproxy.cfg");
        std::fs::write(&cfg, haproxy_cfg(&c, &[(5000, w), (5001, r), (5002, ra), (7000, stats)]))
            .expect("write cfg");
        let check = Command::new(&haproxy).args(["-c", "-f"]).arg(&cfg).output().expect("haproxy -c");
        assert!(
            check.status.success(),
            "haproxy rejects the config: {}",
            String::from_utf8_lossy(&check.stderr)
        );
        let mut hap = ChildGuard::spawn(
            "haproxy",
            Command::new(&haproxy).args(["-db", "-f"]).arg(&cfg),
            &dir.join("haproxy.log"),
        );

        let leader_port = c.nodes[leader].pg_port;
        let ok =
            wait_for(Duration::from_secs(20), || async { whoami(w) == Some((false, leader_port)) }).await;
        assert!(ok, "write port does not reach the leader: {:?}\n{}", whoami(w), hap.log_tail(4000));
        let replica_ports: Vec<u16> = (0..3).filter(|i| *i != leader).map(|i| c.nodes[i].pg_port).collect();
        let ok = wait_for(Duration::from_secs(20), || async {
            whoami(r).is_some_and(|(rec, p)| rec && replica_ports.contains(&p))
        })
        .await;
        assert!(ok, "read port does not reach a replica: {:?}\n{}", whoami(r), hap.log_tail(4000));
        let any = whoami(ra).expect("read-any port answers");
        assert!(c.nodes.iter().any(|n| n.pg_port == any.1), "read-any reached {any:?}");

        // /metrics on the live leader: Patroni's names plus praetor's own, fed by the HA loop.
        let text = metrics_of(&c, leader).await;
        let labels = format!("{{scope=\"apihaproxy\",name=\"{}\"}}", c.nodes[leader].name);
        for line in [format!("patroni_primary{labels} 1"), format!("patroni_postgres_running{labels} 1")] {
            assert!(text.contains(&line), "no {line:?} in\n{text}");
        }
        for needle in [
            "praetor_ha_cycle_duration_seconds_count{",
            "praetor_dcs_request_duration_seconds_count{scope=\"apihaproxy\"",
            "operation=\"load_cluster\"",
            "operation=\"update_leader\"",
            "praetor_last_decision{",
            "the leader with the lock",
        ] {
            assert!(text.contains(needle), "no {needle:?} in\n{text}");
        }
        let lease: f64 = text
            .lines()
            .find(|l| l.starts_with("praetor_leader_lease_seconds_left{"))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .expect("lease metric");
        assert!(lease > 0.0 && lease <= 10.0, "leader lease left {lease} (ttl 10)");

        let cand = (0..3).find(|i| *i != leader).expect("a replica");
        c.switch_over(&store, leader, cand).await;
        let switched = Instant::now();
        let new_port = c.nodes[cand].pg_port;
        // The candidate took the key in a leader race.
        let text = metrics_of(&c, cand).await;
        let won = format!(
            "praetor_leader_races_total{{scope=\"apihaproxy\",name=\"{}\",result=\"won\"}} ",
            c.nodes[cand].name
        );
        let n: u64 = text
            .lines()
            .find_map(|l| l.strip_prefix(won.as_str()))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {won:?} in\n{text}"));
        assert!(n >= 1, "the new leader won no race:\n{text}");
        let ok = wait_for(Duration::from_secs(30), || async { whoami(w) == Some((false, new_port)) }).await;
        let took = switched.elapsed();
        assert!(ok, "write port never reached the new leader: {:?}\n{}", whoami(w), hap.log_tail(4000));
        // inter 1 s × (rise 2 + fall 2) is the worst case for HAProxy; 3 s margin for a loaded machine.
        assert!(took < Duration::from_secs(7), "HAProxy followed the switchover only after {took:?}");
        eprintln!("HAProxy write port on the new leader {took:?} after the switchover completed");
        hap.stop(Duration::from_secs(5));
        drop(c);
    }

    /// The agent binary wires `restapi` TLS and access control from its YAML: HTTPS with an
    /// OpenSSL-encrypted PKCS#8 key and a test CA; `verify_client: required` refuses a client
    /// without certificate; mutating calls without or with wrong credentials get 401, from an
    /// address outside the allowlist 403; the published `api_url` is https.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn agent_serves_https_with_client_certificates_auth_and_allowlist() {
        use crate::support::etcd::TlsFiles;
        let Some(openssl) = require_bin("/usr/bin/openssl") else { return };
        let dir = TestDir::new("agent_serves_https");
        let Some(tls) = TlsFiles::generate(&dir) else { return };
        let enc = dir.join("server-enc.key");
        let out = Command::new(openssl)
            .args(["pkcs8", "-topk8", "-v2", "aes-256-cbc", "-passout", "pass:key-secret", "-in"])
            .arg(&tls.server_key)
            .arg("-out")
            .arg(&enc)
            .output()
            .expect("openssl pkcs8");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let q = |p: &std::path::Path| serde_json::to_string(&p.display().to_string()).expect("json");
        let extra = format!(
            "  certfile: {}\n  keyfile: {}\n  keyfile_password: key-secret\n  cafile: {}\n  verify_client: required\n  \
             authentication: {{username: admin, password: api-secret}}\n  allowlist: ['127.0.0.1/32']\n",
            q(&tls.server_cert),
            q(&enc),
            q(&tls.ca)
        );
        let Some(store) = EtcdStore::start().await else { return };
        let Some(c) = AgentCluster::start_with(
            "apitls",
            &store,
            AgentOpts { nodes: 1, restapi_extra: extra, ..Default::default() },
        ) else {
            return;
        };
        let base = format!("https://127.0.0.1:{}", c.nodes[0].api);
        let ca = reqwest::Certificate::from_pem(&std::fs::read(&tls.ca).expect("ca")).expect("ca pem");
        let mut id_pem = std::fs::read(&tls.client_cert).expect("client cert");
        id_pem.extend(std::fs::read(&tls.client_key).expect("client key"));
        let client = |cert: bool, from: &str| {
            let mut b = reqwest::Client::builder()
                .use_rustls_tls()
                .add_root_certificate(ca.clone())
                .local_address(from.parse::<std::net::IpAddr>().expect("ip"))
                .timeout(Duration::from_secs(5));
            if cert {
                b = b.identity(reqwest::Identity::from_pem(&id_pem).expect("identity"));
            }
            b.build().expect("client")
        };
        let good = client(true, "127.0.0.1");
        let up = wait_for(Duration::from_secs(60), || async {
            good.get(format!("{base}/patroni")).send().await.is_ok_and(|r| r.status().as_u16() == 200)
        })
        .await;
        assert!(up, "no HTTPS answer from the agent\n{}", c.logs());

        let refused = client(false, "127.0.0.1").get(format!("{base}/patroni")).send().await;
        assert!(
            refused.is_err(),
            "verify_client: required must refuse a client without certificate: {refused:?}"
        );

        let post = |cl: &reqwest::Client, auth: Option<&str>| {
            let mut r = cl.post(format!("{base}/failsafe")).body(r#"{"name":"pg9"}"#);
            if let Some(pw) = auth {
                r = r.basic_auth("admin", Some(pw));
            }
            r.send()
        };
        let r = post(&good, None).await.expect("POST");
        assert_eq!(r.status().as_u16(), 401);
        assert_eq!(r.headers()["www-authenticate"], "Basic realm=\"Patroni\"");
        assert_eq!(post(&good, Some("wrong")).await.expect("POST").status().as_u16(), 401);
        // Access granted: the agent answers as Patroni does without failsafe_mode.
        assert_eq!(post(&good, Some("api-secret")).await.expect("POST").status().as_u16(), 502);
        let outsider = client(true, "127.0.0.5");
        let r = post(&outsider, Some("api-secret")).await.expect("POST");
        assert_eq!(r.status().as_u16(), 403);
        assert_eq!(r.text().await.expect("body"), "Access is denied");
        // GETs are open to any address.
        let code = outsider.get(format!("{base}/patroni")).send().await.expect("GET").status().as_u16();
        assert_eq!(code, 200, "GET /patroni from outside the allowlist");

        let https_url = wait_for(Duration::from_secs(60), || async {
            let Ok(r) = good.get(format!("{base}/cluster")).send().await else { return false };
            let v: serde_json::Value = r.json().await.unwrap_or_default();
            v["members"][0]["api_url"].as_str().is_some_and(|u| u.starts_with("https://127.0.0.1:"))
        })
        .await;
        assert!(https_url, "the member key does not publish an https api_url\n{}", c.logs());
    }

    /// Certificate rotation without a restart, as Patroni re-creates its SSL context on SIGHUP
    /// and `POST /reload` when `restapi.certfile` holds another certificate: the agent serves
    /// certificate A; B is written over the same paths and SIGHUP makes new connections get B;
    /// A is written back and `POST /reload` brings it back; a broken certificate is refused with
    /// an error naming `restapi.certfile` in the log and A keeps being served.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn agent_reloads_rotated_restapi_certificates_on_sighup_and_post_reload() {
        use crate::support::etcd::TlsFiles;
        let dir_a = TestDir::new("api_cert_a");
        let Some(a) = TlsFiles::generate(&dir_a) else { return };
        let dir_b = TestDir::new("api_cert_b");
        let Some(b) = TlsFiles::generate(&dir_b) else { return };
        let live = TestDir::new("api_cert_live");
        let (cert, key) = (live.join("server.crt"), live.join("server.key"));
        let install = |t: &TlsFiles| {
            std::fs::copy(&t.server_cert, &cert).expect("copy the certificate");
            std::fs::copy(&t.server_key, &key).expect("copy the key");
        };
        install(&a);
        let q = |p: &std::path::Path| serde_json::to_string(&p.display().to_string()).expect("json");
        let extra = format!("  certfile: {}\n  keyfile: {}\n", q(&cert), q(&key));
        let Some(store) = EtcdStore::start().await else { return };
        let Some(c) = AgentCluster::start_with(
            "apicert",
            &store,
            AgentOpts { nodes: 1, restapi_extra: extra, ..Default::default() },
        ) else {
            return;
        };
        let base = format!("https://127.0.0.1:{}", c.nodes[0].api);
        let der = |t: &TlsFiles| {
            use rustls_pki_types::pem::PemObject;
            let pem = std::fs::read(&t.server_cert).expect("read the certificate");
            rustls_pki_types::CertificateDer::from_pem_slice(&pem).expect("certificate PEM").to_vec()
        };
        let (der_a, der_b) = (der(&a), der(&b));
        // A new client, so a new connection, trusting both test CAs: the certificate it is served.
        let served = || async {
            let mut builder =
                reqwest::Client::builder().use_rustls_tls().tls_info(true).timeout(Duration::from_secs(5));
            for ca in [&a.ca, &b.ca] {
                let pem = std::fs::read(ca).expect("read a CA");
                builder = builder.add_root_certificate(reqwest::Certificate::from_pem(&pem).expect("CA PEM"));
            }
            let r = builder.build().expect("client").get(format!("{base}/patroni")).send().await.ok()?;
            r.extensions()
                .get::<reqwest::tls::TlsInfo>()
                .and_then(|i| i.peer_certificate())
                .map(|d| d.to_vec())
        };
        let up =
            wait_for(Duration::from_secs(60), || async { served().await.as_ref() == Some(&der_a) }).await;
        assert!(up, "the agent does not serve certificate A\n{}", c.logs());

        install(&b);
        let pid = c.nodes[0].agent.as_ref().and_then(|g| g.pid()).expect("agent pid");
        let pid = nix::unistd::Pid::from_raw(i32::try_from(pid).expect("pid"));
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).expect("SIGHUP");
        let rotated =
            wait_for(Duration::from_secs(20), || async { served().await.as_ref() == Some(&der_b) }).await;
        assert!(rotated, "SIGHUP did not bring certificate B\n{}", c.logs());

        let reload = || async {
            let http = reqwest::Client::builder()
                .use_rustls_tls()
                .danger_accept_invalid_certs(true)
                .timeout(Duration::from_secs(5))
                .build()
                .expect("client");
            let r = http.post(format!("{base}/reload")).send().await.expect("POST /reload");
            assert_eq!(r.status().as_u16(), 202, "POST /reload");
        };
        install(&a);
        reload().await;
        let back =
            wait_for(Duration::from_secs(20), || async { served().await.as_ref() == Some(&der_a) }).await;
        assert!(back, "POST /reload did not bring certificate A back\n{}", c.logs());

        std::fs::write(&cert, "-----BEGIN CERTIFICATE-----\nbroken\n-----END CERTIFICATE-----\n")
            .expect("write a broken certificate");
        reload().await;
        let refused = wait_for(Duration::from_secs(20), || async {
            c.log(0)
                .lines()
                .any(|l| l.contains("REST API TLS not reloaded") && l.contains("restapi.certfile"))
        })
        .await;
        assert!(refused, "no error naming restapi.certfile in the log\n{}", c.logs());
        assert_eq!(served().await.as_ref(), Some(&der_a), "a broken certificate must keep A served");
    }
}
