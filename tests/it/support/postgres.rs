//! Real PostgreSQL 15 (`/usr/lib/postgresql/15/bin`) for tests: per-node directories owned by the
//! `postgres` OS user (PostgreSQL refuses root), free 127.0.0.1 ports, a unix socket in the node
//! directory, and a guard that stops every postmaster of the test by PID (immediate mode, SIGKILL
//! after 5 s), also when the test panics.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use praetor::postgres::{Credentials, PgSettings, Postgres, RunAs, postmaster};
use serde_json::json;

use super::{TestDir, free_port, require_bin};

/// Where Debian's postgresql-15 installs the server binaries.
pub const PG_BIN_DIR: &str = "/usr/lib/postgresql/15/bin";

/// The bin dir, or `None` (skipped locally, panics when `CI=true`).
pub fn require_pg() -> Option<PathBuf> {
    require_bin(&format!("{PG_BIN_DIR}/postgres")).map(|_| PathBuf::from(PG_BIN_DIR))
}

/// `let bin = require_pg!();` — the PostgreSQL bin dir or return from the test.
#[macro_export]
macro_rules! require_pg {
    () => {
        match $crate::support::postgres::require_pg() {
            Some(p) => p,
            None => return,
        }
    };
}

/// Stops every postmaster of the registered data directories on drop: SIGCONT (in case a test
/// froze it), SIGQUIT (immediate), SIGKILL after 5 s. Uses `postmaster.pid`, so it also finds a
/// postmaster restarted during the test.
#[derive(Default)]
pub struct PostmasterGuard {
    data_dirs: Vec<PathBuf>,
}

impl PostmasterGuard {
    /// Watch `data_dir`.
    pub fn watch(&mut self, data_dir: &Path) {
        self.data_dirs.push(data_dir.to_path_buf());
    }
}

impl Drop for PostmasterGuard {
    fn drop(&mut self) {
        use nix::sys::signal::{Signal, kill};
        use nix::unistd::Pid;
        for d in &self.data_dirs {
            let Ok(Some(pf)) = postmaster::PidFile::read(d) else { continue };
            if !postmaster::is_postmaster_of(pf.pid, d) {
                continue;
            }
            let pid = Pid::from_raw(pf.pid);
            let _ = kill(pid, Signal::SIGCONT);
            let _ = kill(pid, Signal::SIGQUIT);
            let deadline = Instant::now() + Duration::from_secs(5);
            while postmaster::pid_alive(pf.pid) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            if postmaster::pid_alive(pf.pid) {
                let _ = kill(pid, Signal::SIGKILL);
            }
        }
    }
}

/// A test cluster: its directory, the bin dir and the postmaster guard.
pub struct PgCluster {
    /// Postmasters stopped on drop (declared first: dropped before the directory).
    pub guard: PostmasterGuard,
    /// Test directory.
    pub dir: TestDir,
    /// Bin dir.
    pub bin: PathBuf,
}

impl PgCluster {
    /// A cluster directory for test `name`, traversable by the PostgreSQL user.
    pub fn new(name: &str, bin: PathBuf) -> PgCluster {
        super::init_logging();
        let dir = TestDir::new(name);
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("make the test directory traversable");
        PgCluster { guard: PostmasterGuard::default(), dir, bin }
    }

    /// Settings for member `name` on a free port: data in `<dir>/<name>/data`, unix socket and
    /// pgpass in `<dir>/<name>`, scram authentication over 127.0.0.1, trust over the socket,
    /// a superuser, a replication and a rewind user with passwords, pg_rewind enabled.
    pub fn node(&mut self, name: &str) -> PgSettings {
        let home = self.dir.subdir(name);
        std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o700)).expect("chmod node dir");
        if let Ok(Some(r)) = RunAs::for_agent("postgres") {
            r.chown(&home).expect("give the node directory to postgres");
        }
        let port = free_port();
        let mut s = PgSettings::new(name, "pgtest", home.join("data"), &format!("127.0.0.1:{port}"));
        s.bin_dir = Some(self.bin.clone());
        s.superuser = Credentials::new("postgres", Some("su-secret"));
        s.replication = Credentials::new("replicator", Some("rep-secret"));
        s.rewind = Some(Credentials::new("rewinder", Some("rw-secret")));
        s.pgpass = home.join("pgpass");
        s.postmaster_log = Some(home.join("postgres.log"));
        s.use_unix_socket = true;
        s.use_pg_rewind = true;
        s.pg_ctl_timeout = Duration::from_secs(30);
        s.observe_timeout = Duration::from_secs(2);
        s.pg_hba = vec![
            "local all all trust".into(),
            "host all all 127.0.0.1/32 scram-sha-256".into(),
            "host replication replicator 127.0.0.1/32 scram-sha-256".into(),
        ];
        s.parameters = BTreeMap::from([
            ("unix_socket_directories".to_string(), json!(home.display().to_string())),
            ("shared_buffers".to_string(), json!("16MB")),
            ("fsync".to_string(), json!("off")),
            ("log_min_messages".to_string(), json!("info")),
        ]);
        s.bootstrap.initdb = json!([{"encoding": "UTF8"}, {"locale": "C"}]);
        self.guard.watch(&s.data_dir);
        s
    }

    /// A controller for `s`.
    pub fn controller(&self, s: &PgSettings) -> Postgres {
        Postgres::new(s.clone()).expect("create the controller")
    }

    /// Write an executable script (mode 0755) into the test directory.
    pub fn script(&self, name: &str, body: &str) -> PathBuf {
        let p = self.dir.join(name);
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).expect("write script");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).expect("chmod script");
        p
    }
}
