//! A real ZooKeeper (3.8, Debian's `zookeeper` package) for tests: one standalone server on a free
//! 127.0.0.1 port, data in a [`TestDir`], started with `java` directly (so we own its PID), stopped
//! by PID when dropped (also on panic). Plus a Python venv with Patroni 4.1.5 for interop tests.
//!
//! Server settings: `tickTime` 250 ms, session timeouts from 1 s to 60 s (so both the suite's short
//! ttls and Patroni's default ttl of 30 s are accepted), admin server off, only the `srvr`/`ruok`
//! four-letter words (readiness is `srvr` answering `Mode: standalone`), heap capped at 128 MB.

use super::{ChildGuard, TestDir, free_port, require_bin};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// The JVM.
pub const JAVA: &str = "/usr/bin/java";
/// The server jar of Debian's `zookeeper` package (its manifest carries the class path).
pub const ZOOKEEPER_JAR: &str = "/usr/share/java/zookeeper.jar";
/// An SLF4J binding so the server log goes to our log file (optional).
const SLF4J_SIMPLE: &str = "/usr/share/java/slf4j-simple.jar";
/// `digest` credentials of the server's super user (bypasses ACLs).
pub const SUPER_AUTH: &[u8] = b"super:praetor-test";
/// Server tick: the granularity of session expiry.
pub const TICK: Duration = Duration::from_millis(250);

const START_TIMEOUT: Duration = Duration::from_secs(60);

/// A running standalone ZooKeeper. Dropping it stops the server.
pub struct ZooKeeperServer {
    port: u16,
    tls: Option<TlsFiles>,
    cfg: PathBuf,
    log: PathBuf,
    process: Option<ChildGuard>,
    // Declared last: dropped after the process is stopped.
    dir: TestDir,
}

impl ZooKeeperServer {
    /// Start a fresh server; `None` when Java or ZooKeeper is not installed (panics when `CI=true`).
    pub async fn start() -> Option<ZooKeeperServer> {
        Self::start_with(false).await
    }

    /// Start a server that also listens with TLS on [`ZooKeeperServer::tls`]'s port and requires a
    /// client certificate there (certificates made with `openssl`, see [`TlsFiles`]).
    pub async fn start_tls() -> Option<ZooKeeperServer> {
        Self::start_with(true).await
    }

    async fn start_with(with_tls: bool) -> Option<ZooKeeperServer> {
        require_bin(JAVA)?;
        require_bin(ZOOKEEPER_JAR)?;
        if with_tls {
            require_bin(OPENSSL)?;
        }
        let dir = TestDir::new("zookeeper");
        let data = dir.subdir("data");
        let port = free_port();
        let cfg = dir.join("zoo.cfg");
        let body = format!(
            "tickTime={tick}\n\
             dataDir={data}\n\
             clientPort={port}\n\
             clientPortAddress=127.0.0.1\n\
             minSessionTimeout=1000\n\
             maxSessionTimeout=60000\n\
             maxClientCnxns=0\n\
             admin.enableServer=false\n\
             4lw.commands.whitelist=srvr,ruok\n\
             preAllocSize=1024\n\
             forceSync=no\n\
             autopurge.purgeInterval=0\n",
            tick = TICK.as_millis(),
            data = data.display(),
        );
        let tls = with_tls.then(|| TlsFiles::generate(&dir.subdir("tls")));
        let body = match &tls {
            None => body,
            Some(t) => format!(
                "{body}secureClientPort={secure}\n\
                 secureClientPortAddress=127.0.0.1\n\
                 serverCnxnFactory=org.apache.zookeeper.server.NettyServerCnxnFactory\n\
                 ssl.keyStore.location={keystore}\n\
                 ssl.keyStore.type=PEM\n\
                 ssl.trustStore.location={ca}\n\
                 ssl.trustStore.type=PEM\n\
                 ssl.clientAuth=need\n",
                secure = t.port,
                keystore = t.server_keystore.display(),
                ca = t.ca.display(),
            ),
        };
        std::fs::write(&cfg, body).expect("write zoo.cfg");
        let log = dir.join("zookeeper.log");
        let mut server = ZooKeeperServer { port, tls, cfg, log, process: None, dir };
        server.spawn().await;
        Some(server)
    }

    async fn spawn(&mut self) {
        let mut cp = ZOOKEEPER_JAR.to_string();
        // The jar's manifest lacks netty-codec/-resolver, which the Netty (TLS) connection factory needs.
        for jar in [SLF4J_SIMPLE, "/usr/share/java/netty-codec.jar", "/usr/share/java/netty-resolver.jar"] {
            if Path::new(jar).is_file() {
                cp.push(':');
                cp.push_str(jar);
            }
        }
        let mut cmd = Command::new(JAVA);
        cmd.args([
            "-Xmx128m",
            "-XX:+UseSerialGC",
            "-XX:TieredStopAtLevel=1",
            "-Dzookeeper.jmx.log4j.disable=true",
            // x509 ACLs (Patroni's `set_acls`) are only accepted when the x509 provider is known.
            "-Dzookeeper.authProvider.x509=org.apache.zookeeper.server.auth.X509AuthenticationProvider",
            // `super:praetor-test` bypasses ACLs, to inspect what a test created (see SUPER_AUTH).
            "-Dzookeeper.DigestAuthenticationProvider.superDigest=super:Qa8yBVRRH1OB3EmbtENhIeUh9cs=",
            "-Dorg.slf4j.simpleLogger.defaultLogLevel=info",
            "-cp",
            &cp,
            "org.apache.zookeeper.server.ZooKeeperServerMain",
        ])
        .arg(&self.cfg)
        .current_dir(self.dir.path());
        let mut guard = ChildGuard::spawn("zookeeper", &mut cmd, &self.log);
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if self.four_letter("srvr").is_some_and(|out| out.contains("Mode: standalone")) {
                break;
            }
            if !guard.is_running() {
                panic!("zookeeper exited during start\n{}", guard.log_tail(4000));
            }
            if Instant::now() > deadline {
                panic!("zookeeper did not answer `srvr` within {START_TIMEOUT:?}\n{}", guard.log_tail(4000));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.process = Some(guard);
    }

    /// Send a four-letter word (`srvr`, `ruok`) and return the answer.
    pub fn four_letter(&self, word: &str) -> Option<String> {
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], self.port));
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        s.write_all(word.as_bytes()).ok()?;
        let mut out = String::new();
        s.read_to_string(&mut out).ok()?;
        Some(out)
    }

    /// The TLS listener and its certificates (servers from [`ZooKeeperServer::start_tls`]).
    pub fn tls(&self) -> Option<&TlsFiles> {
        self.tls.as_ref()
    }

    /// The client port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:<port>`, for a `zookeeper.hosts` list.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The `hosts` list of the `zookeeper:` section.
    pub fn hosts(&self) -> Vec<String> {
        vec![self.host()]
    }

    /// The server's directory (config, data, log).
    pub fn dir(&self) -> &TestDir {
        &self.dir
    }

    /// A plain client, as another tool (zkCli) would use.
    pub async fn client(&self) -> zookeeper_client::Client {
        zookeeper_client::Client::connector()
            .with_session_timeout(Duration::from_secs(10))
            .connect(&self.host())
            .await
            .expect("connect a plain ZooKeeper client to the test server")
    }

    /// A plain client authenticated as the super user, which bypasses ACLs.
    pub async fn super_client(&self) -> zookeeper_client::Client {
        zookeeper_client::Client::connector()
            .with_session_timeout(Duration::from_secs(10))
            .with_auth("digest", SUPER_AUTH)
            .connect(&self.host())
            .await
            .expect("connect a super-user ZooKeeper client to the test server")
    }

    /// Stop the server (SIGTERM, then SIGKILL). Sessions survive a restart (they live in the data dir).
    pub fn stop(&mut self) {
        if let Some(mut p) = self.process.take() {
            p.stop(Duration::from_secs(5));
        }
    }

    /// Start it again on the same port and data.
    pub async fn restart(&mut self) {
        self.stop();
        self.spawn().await;
    }

    /// The end of the server log, for failure messages.
    pub fn log_tail(&self) -> String {
        self.process.as_ref().map(|p| p.log_tail(4000)).unwrap_or_default()
    }
}

impl Drop for ZooKeeperServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `openssl`, to make the test certificates.
pub const OPENSSL: &str = "/usr/bin/openssl";

/// Certificates for a TLS test server: a CA, a server certificate valid only for the DNS name
/// [`TlsFiles::SERVER_NAME`] (not for 127.0.0.1, so host name verification can be seen failing),
/// and a client certificate with subject `CN=praetor-client` (its x509 identity in ZooKeeper).
pub struct TlsFiles {
    /// The TLS client port on 127.0.0.1.
    pub port: u16,
    /// CA certificate (PEM).
    pub ca: PathBuf,
    /// Client certificate (PEM).
    pub client_cert: PathBuf,
    /// Client key (unencrypted PKCS#8 PEM).
    pub client_key: PathBuf,
    server_keystore: PathBuf,
}

impl TlsFiles {
    /// The only name the server certificate is valid for.
    pub const SERVER_NAME: &'static str = "zk.praetor.test";
    /// The client certificate's subject, ZooKeeper's x509 id of the client.
    pub const CLIENT_SUBJECT: &'static str = "CN=praetor-client";

    fn generate(dir: &Path) -> TlsFiles {
        let openssl = |args: &[&str]| {
            let out = Command::new(OPENSSL).args(args).current_dir(dir).output().expect("run openssl");
            assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        };
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
        let mut a = vec!["req", "-x509"];
        a.extend(ec);
        a.extend(["-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=praetor test CA"]);
        openssl(&a);
        for (name, subject, ext) in [
            (
                "server",
                "/CN=zookeeper",
                format!("subjectAltName=DNS:{}\nextendedKeyUsage=serverAuth\n", Self::SERVER_NAME),
            ),
            ("client", "/CN=praetor-client", "extendedKeyUsage=clientAuth\n".to_string()),
        ] {
            std::fs::write(dir.join(format!("{name}.ext")), ext).expect("write extensions");
            let mut a = vec!["req"];
            a.extend(ec);
            let (key, csr, pem, extf) =
                (format!("{name}.key"), format!("{name}.csr"), format!("{name}.pem"), format!("{name}.ext"));
            a.extend(["-keyout", &key, "-out", &csr, "-subj", subject]);
            openssl(&a);
            openssl(&[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                &pem,
                "-days",
                "2",
                "-extfile",
                &extf,
            ]);
        }
        let keystore = dir.join("server-keystore.pem");
        let key = std::fs::read_to_string(dir.join("server.key")).expect("server key");
        let cert = std::fs::read_to_string(dir.join("server.pem")).expect("server cert");
        std::fs::write(&keystore, format!("{key}{cert}")).expect("write keystore");
        TlsFiles {
            port: free_port(),
            ca: dir.join("ca.pem"),
            client_cert: dir.join("client.pem"),
            client_key: dir.join("client.key"),
            server_keystore: keystore,
        }
    }

    /// `127.0.0.1:<tls port>`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

/// Write `value` at `path` (creating it and its parents as persistent znodes), as another tool would.
pub async fn raw_put(client: &zookeeper_client::Client, path: &str, value: &str) {
    use zookeeper_client as zk;
    let opts = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
    match client.set_data(path, value.as_bytes(), None).await {
        Ok(_) => {}
        Err(zk::Error::NoNode) => {
            if let Some(i) = path.rfind('/').filter(|i| *i > 0) {
                client.mkdir(&path[..i], &opts).await.expect("raw mkdir");
            }
            client.create(path, value.as_bytes(), &opts).await.expect("raw create");
        }
        Err(e) => panic!("raw set {path}: {e}"),
    }
}

/// Read `path` as another tool would: value, `stat.version`, ephemeral owner (0: persistent).
pub async fn raw_get(client: &zookeeper_client::Client, path: &str) -> Option<(String, i32, i64)> {
    match client.get_data(path).await {
        Ok((data, stat)) => {
            Some((String::from_utf8_lossy(&data).into_owned(), stat.version, stat.ephemeral_owner))
        }
        Err(zookeeper_client::Error::NoNode) => None,
        Err(e) => panic!("raw get {path}: {e}"),
    }
}

pub use super::patroni::PATRONI_VERSION;

/// A venv with `patroni[zookeeper]==4.1.5` and a psycopg2 driver; returns its `python` (see
/// [`super::patroni::venv`]).
pub fn patroni_python() -> Option<PathBuf> {
    super::patroni::venv("zookeeper", &[&format!("patroni[zookeeper,psycopg2-binary]=={PATRONI_VERSION}")])
        .map(|v| v.join("bin/python"))
}

/// The interop driver script (`tests/fixtures/zookeeper/patroni_zk.py`).
pub fn patroni_script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/zookeeper/patroni_zk.py")
}
