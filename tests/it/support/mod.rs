//! Shared harness of the integration tests: a temporary directory per test ([`TestDir`]), free
//! loopback ports ([`free_port`]), a guard that stops a spawned server by PID ([`ChildGuard`]), bounded
//! waiting ([`wait_for`]), and the rule for missing server binaries ([`require_bin!`]): skip with a
//! message locally, fail when `CI=true`.
//!
//! Real servers live in submodules (`etcd`). Everything listens on 127.0.0.1 only.
#![allow(dead_code)] // each test module uses a part of the harness

pub mod agents;
#[cfg(feature = "consul")]
pub mod consul;
pub mod etcd;
pub mod netns;
pub mod patroni;
pub mod postgres;
#[cfg(feature = "zookeeper")]
pub mod zookeeper;

use std::collections::HashSet;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, Once};
use std::time::{Duration, Instant};

/// `CI=true` in the environment: missing server binaries fail tests instead of skipping them.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
}

/// The binary at `path` if it exists. Missing: `None` with a SKIP message on stderr, or a panic
/// when `CI=true`. Use it through [`require_bin!`].
pub fn require_bin(path: &str) -> Option<PathBuf> {
    let p = PathBuf::from(path);
    if p.is_file() {
        return Some(p);
    }
    if in_ci() {
        panic!("required server binary {path} is missing (CI=true: not skipping)");
    }
    eprintln!("SKIP: {path} is not installed; install it to run this test (in CI it is required)");
    None
}

/// `let etcd = require_bin!("/usr/bin/etcd");` — the binary's path, or return from the test
/// (skipped locally, panics when `CI=true`).
#[macro_export]
macro_rules! require_bin {
    ($path:expr) => {
        match $crate::support::require_bin($path) {
            Some(p) => p,
            None => return,
        }
    };
}

/// Log to the test's captured output once per process (`RUST_LOG`, default `info` for praetor).
pub fn init_logging() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("praetor=debug,info"));
        let _ = tracing_subscriber::fmt().with_env_filter(filter).with_test_writer().try_init();
    });
}

/// A temporary directory for one test, removed on drop (kept when `PRAETOR_KEEP_TEST_DIRS` is set,
/// and its path printed, to look at server logs after a failure).
pub struct TestDir {
    dir: Option<tempfile::TempDir>,
    path: PathBuf,
}

impl TestDir {
    /// A fresh directory named after `name` under the system temp dir.
    pub fn new(name: &str) -> TestDir {
        let dir = tempfile::Builder::new()
            .prefix(&format!("praetor-{name}-"))
            .tempdir()
            .expect("create a temporary directory for the test");
        let path = dir.path().to_path_buf();
        TestDir { dir: Some(dir), path }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A path inside the directory (not created).
    pub fn join(&self, rel: impl AsRef<Path>) -> PathBuf {
        self.path.join(rel)
    }

    /// A subdirectory, created.
    pub fn subdir(&self, rel: impl AsRef<Path>) -> PathBuf {
        let p = self.path.join(rel);
        std::fs::create_dir_all(&p).expect("create a test subdirectory");
        p
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        if std::env::var_os("PRAETOR_KEEP_TEST_DIRS").is_some()
            && let Some(d) = self.dir.take()
        {
            eprintln!("keeping test directory {}", d.keep().display());
        }
    }
}

/// A TCP port on 127.0.0.1 that was free a moment ago and that this process has not handed out
/// before (so two servers of one test never get the same port).
pub fn free_port() -> u16 {
    static GIVEN: Mutex<Option<HashSet<u16>>> = Mutex::new(None);
    for _ in 0..1000 {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port on 127.0.0.1");
        let port = l.local_addr().expect("local address of a bound socket").port();
        drop(l);
        let mut given = GIVEN.lock().unwrap_or_else(|p| p.into_inner());
        if given.get_or_insert_with(HashSet::new).insert(port) {
            return port;
        }
    }
    panic!("no free port on 127.0.0.1 after 1000 tries");
}

/// A command running `program` through `prefix` (e.g. `ip netns exec <ns> …`, see
/// [`netns::Net::prefix`]), or directly when `prefix` is empty.
pub fn command_in(prefix: &[String], program: &Path) -> Command {
    match prefix.split_first() {
        Some((first, rest)) => {
            let mut c = Command::new(first);
            c.args(rest).arg(program);
            c
        }
        None => Command::new(program),
    }
}

/// A value a [`wait_for`] check records and the caller reads afterwards. `Sync` (unlike a `Cell`),
/// so a future holding it stays `Send` and can run on a spawned task.
pub struct Found<T>(Mutex<Option<T>>);

impl<T: Copy> Found<T> {
    /// Empty.
    pub fn new() -> Found<T> {
        Found(Mutex::new(None))
    }

    /// Record `v` (replacing what was there).
    pub fn set(&self, v: Option<T>) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = v;
    }

    /// The recorded value.
    pub fn get(&self) -> Option<T> {
        *self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Poll `check` every 50 ms until it returns true or `timeout` passes. Returns whether it did.
pub async fn wait_for<F, Fut>(timeout: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A frozen PostgreSQL: SIGSTOP on the postmaster and each of its children (every backend calls
/// setsid(), so the postmaster's process group alone does not hold them). Every stopped process
/// gets SIGCONT on drop, also when the test panics. Connections stay open; nothing answers.
pub struct FrozenPostgres(Vec<nix::unistd::Pid>);

impl FrozenPostgres {
    /// Freeze the postmaster `pid` and its children.
    pub fn freeze(pid: i32) -> FrozenPostgres {
        let mut pids = vec![nix::unistd::Pid::from_raw(pid)];
        for e in std::fs::read_dir("/proc").expect("list /proc").flatten() {
            let Some(child) = e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else { continue };
            let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else { continue };
            // `pid (comm) state ppid ...`: comm may hold spaces, so split after the last ')'.
            let ppid = stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().nth(1));
            if ppid.and_then(|p| p.parse::<i32>().ok()) == Some(pid) {
                pids.push(nix::unistd::Pid::from_raw(child));
            }
        }
        let frozen = FrozenPostgres(pids);
        for p in &frozen.0 {
            let _ = nix::sys::signal::kill(*p, nix::sys::signal::Signal::SIGSTOP);
        }
        frozen
    }
}

impl Drop for FrozenPostgres {
    fn drop(&mut self) {
        for p in &self.0 {
            let _ = nix::sys::signal::kill(*p, nix::sys::signal::Signal::SIGCONT);
        }
    }
}

/// A spawned server process, in its own process group, with stdout and stderr in a log file. Drop
/// stops it by PID (SIGTERM to its group, SIGKILL after 5 s), also when the test panics.
pub struct ChildGuard {
    name: String,
    child: Option<Child>,
    log: PathBuf,
}

impl ChildGuard {
    /// Spawn `cmd` as `name`, appending its output to `log`. Panics if it cannot be started.
    pub fn spawn(name: &str, cmd: &mut Command, log: &Path) -> ChildGuard {
        let out = File::options().create(true).append(true).open(log).expect("open the server log file");
        let err = out.try_clone().expect("duplicate the log file handle");
        cmd.stdin(Stdio::null()).stdout(out).stderr(err).process_group(0);
        let child = cmd.spawn().unwrap_or_else(|e| panic!("cannot start {name} ({cmd:?}): {e}"));
        ChildGuard { name: name.to_string(), child: Some(child), log: log.to_path_buf() }
    }

    /// The process id (also its process group id).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Still running (not exited, not stopped by us).
    pub fn is_running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// The last `max` bytes of the log, for failure messages.
    pub fn log_tail(&self, max: u64) -> String {
        let mut s = String::new();
        if let Ok(mut f) = File::open(&self.log) {
            let len = f.metadata().map(|m| m.len()).unwrap_or(0);
            let _ = f.seek(SeekFrom::Start(len.saturating_sub(max)));
            let _ = f.read_to_string(&mut s);
        }
        format!("--- last lines of {} ---\n{s}", self.log.display())
    }

    fn signal(&self, sig: nix::sys::signal::Signal) {
        if let Some(pid) = self.pid() {
            let pgid = nix::unistd::Pid::from_raw(pid as i32);
            let _ = nix::sys::signal::killpg(pgid, sig);
        }
    }

    /// SIGSTOP: the process keeps its sockets open but answers nothing (a hung server).
    pub fn pause(&self) {
        self.signal(nix::sys::signal::Signal::SIGSTOP);
    }

    /// SIGCONT after [`ChildGuard::pause`].
    pub fn resume(&self) {
        self.signal(nix::sys::signal::Signal::SIGCONT);
    }

    /// SIGKILL now and reap (a crash, as a test scenario).
    pub fn kill(&mut self) {
        // Only while the leader is unreaped: after that its PID (and group id) may be reused.
        if self.is_running() {
            self.signal(nix::sys::signal::Signal::SIGKILL);
        }
        if let Some(mut c) = self.child.take() {
            let _ = c.wait();
        }
    }

    /// SIGTERM, wait up to `grace` for the exit, then SIGKILL. Reaps the process.
    pub fn stop(&mut self, grace: Duration) {
        if self.child.is_none() {
            return;
        }
        if self.is_running() {
            self.signal(nix::sys::signal::Signal::SIGTERM);
            self.signal(nix::sys::signal::Signal::SIGCONT); // in case the test paused it
        }
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if !self.is_running() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill();
    }

    /// The server's name given at spawn.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(5));
    }
}
