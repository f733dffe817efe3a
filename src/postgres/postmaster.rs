//! The postmaster process: `postmaster.pid` parsing, detached start, signal stop, liveness.
//!
//! The postmaster is deliberately not managed like other subprocesses: it runs in its own session,
//! without `kill_on_drop`, so an agent restart never restarts PostgreSQL. A new agent finds it again
//! from `postmaster.pid`, validated against `/proc` (alive, not a zombie, working directory = PGDATA).

use std::ffi::OsString;
use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tracing::{debug, info};

use super::process::{EnvPolicy, RunAs, base_command};

/// How a server is asked to stop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopMode {
    /// SIGTERM: wait for clients to disconnect.
    Smart,
    /// SIGINT: disconnect clients, shutdown checkpoint.
    Fast,
    /// SIGQUIT: no checkpoint; crash recovery at the next start.
    Immediate,
}

impl StopMode {
    /// The signal PostgreSQL maps to this mode.
    pub fn signal(self) -> Signal {
        match self {
            StopMode::Smart => Signal::SIGTERM,
            StopMode::Fast => Signal::SIGINT,
            StopMode::Immediate => Signal::SIGQUIT,
        }
    }
}

/// The content of `postmaster.pid` (PostgreSQL 10+ layout).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PidFile {
    /// Line 1: postmaster PID.
    pub pid: i32,
    /// Line 2: data directory.
    pub data_dir: PathBuf,
    /// Line 3: start time, seconds since the epoch.
    pub start_time: i64,
    /// Line 4: port.
    pub port: Option<u16>,
    /// Line 5: first unix socket directory.
    pub socket_dir: Option<String>,
    /// Line 6: first listen address.
    pub listen_addr: Option<String>,
    /// Line 8: `starting`, `stopping`, `ready` or `standby`.
    pub status: Option<String>,
}

impl PidFile {
    /// Parse the file content; `None` when the first three lines are not there yet.
    pub fn parse(s: &str) -> Option<PidFile> {
        let lines: Vec<&str> = s.lines().collect();
        let pid = lines.first()?.trim().parse().ok()?;
        let data_dir = PathBuf::from(lines.get(1)?.trim());
        let start_time = lines.get(2)?.trim().parse().ok()?;
        let nonempty =
            |i: usize| lines.get(i).map(|l| l.trim()).filter(|l| !l.is_empty()).map(str::to_string);
        Some(PidFile {
            pid,
            data_dir,
            start_time,
            port: nonempty(3).and_then(|p| p.parse().ok()),
            socket_dir: nonempty(4),
            listen_addr: nonempty(5),
            status: nonempty(7),
        })
    }

    /// Read `<data_dir>/postmaster.pid`. `Ok(None)` when missing or incomplete.
    pub fn read(data_dir: &Path) -> std::io::Result<Option<PidFile>> {
        match std::fs::read_to_string(data_dir.join("postmaster.pid")) {
            Ok(s) => Ok(PidFile::parse(&s)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// What `postmaster.pid` says about a data directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PostmasterState {
    /// No pid file: cleanly stopped (or never started).
    Stopped,
    /// The pid file names a live postmaster of this data directory.
    Running(PidFile),
    /// The pid file exists but its process is gone (or is another program): the server crashed
    /// or was killed.
    Crashed(PidFile),
}

/// `true` when `pid` exists and is not a zombie.
pub fn pid_alive(pid: i32) -> bool {
    if pid <= 0 {
        return false;
    }
    match kill(Pid::from_raw(pid), None) {
        Ok(()) | Err(nix::errno::Errno::EPERM) => {}
        Err(_) => return false,
    }
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // Field 3 is the state; the command name in field 2 may contain spaces, so skip to ')'.
        Ok(stat) => {
            stat.rsplit_once(')').map(|(_, rest)| !rest.trim_start().starts_with(['Z', 'X'])).unwrap_or(true)
        }
        Err(_) => true,
    }
}

/// `true` when `pid` is a live postmaster of `data_dir`: its working directory is PGDATA (the
/// postmaster chdirs there) or, when `/proc/<pid>/cwd` is unreadable, its command line names it.
pub fn is_postmaster_of(pid: i32, data_dir: &Path) -> bool {
    if !pid_alive(pid) {
        return false;
    }
    let want = std::fs::canonicalize(data_dir).unwrap_or_else(|_| data_dir.to_path_buf());
    if let Ok(cwd) = std::fs::read_link(format!("/proc/{pid}/cwd")) {
        return cwd == want || cwd == data_dir;
    }
    match std::fs::read(format!("/proc/{pid}/cmdline")) {
        Ok(cmd) => {
            let cmd = String::from_utf8_lossy(&cmd);
            let prog = cmd.split('\0').next().unwrap_or("");
            (prog.contains("postgres") || prog.contains("postmaster"))
                && (cmd.contains(&*data_dir.to_string_lossy()) || cmd.contains(&*want.to_string_lossy()))
        }
        // Not readable and no /proc: trust the pid file.
        Err(_) => true,
    }
}

/// Inspect `postmaster.pid` of `data_dir`.
pub fn state(data_dir: &Path) -> std::io::Result<PostmasterState> {
    Ok(match PidFile::read(data_dir)? {
        None => PostmasterState::Stopped,
        Some(pf) if is_postmaster_of(pf.pid, data_dir) => PostmasterState::Running(pf),
        Some(pf) => PostmasterState::Crashed(pf),
    })
}

/// How to start the postmaster.
#[derive(Clone, Debug)]
pub struct StartSpec {
    /// The `postgres` binary.
    pub program: PathBuf,
    /// PGDATA.
    pub data_dir: PathBuf,
    /// `--config-file=`.
    pub config_file: PathBuf,
    /// `--name=value` options (the command-line-only parameters).
    pub options: Vec<(String, String)>,
    /// Identity.
    pub run_as: Option<RunAs>,
    /// stdout/stderr destination; `None` = `/dev/null`.
    pub log_file: Option<PathBuf>,
}

/// Spawn the postmaster in a new session, not tied to the agent: no `kill_on_drop`, its own
/// session, stdin from `/dev/null`. Returns its PID. The child is reaped by a background task while
/// the agent lives; after an agent restart it belongs to init.
pub fn spawn_detached(spec: &StartSpec) -> std::io::Result<i32> {
    let mut args: Vec<OsString> = vec![
        "-D".into(),
        spec.data_dir.clone().into(),
        format!("--config-file={}", spec.config_file.display()).into(),
    ];
    for (k, v) in &spec.options {
        args.push(format!("--{k}={v}").into());
    }
    let mut cmd =
        base_command(&spec.program, &args, &[], &EnvPolicy::Minimal, Some(&spec.data_dir), spec.run_as);
    let (out, err) = match &spec.log_file {
        Some(p) => {
            let f = OpenOptions::new().create(true).append(true).open(p)?;
            if let Some(r) = spec.run_as {
                let _ = r.chown(p);
            }
            let f2 = f.try_clone()?;
            (Stdio::from(f), Stdio::from(f2))
        }
        None => (Stdio::null(), Stdio::null()),
    };
    cmd.stdin(Stdio::null()).stdout(out).stderr(err).kill_on_drop(false);
    new_session(&mut cmd);
    info!(program = %spec.program.display(), ?args, "starting postmaster");
    let mut child = cmd.spawn()?;
    let pid = child.id().map(|p| p as i32).unwrap_or(0);
    // Reap it when it exits so that a dead postmaster never lingers as a zombie of ours.
    if tokio::runtime::Handle::try_current().is_ok() {
        tokio::spawn(async move {
            let st = child.wait().await;
            debug!(pid, status = ?st, "postmaster exited");
        });
    }
    Ok(pid)
}

#[allow(unsafe_code)]
fn new_session(cmd: &mut tokio::process::Command) {
    // SAFETY: the closure runs in the forked child before exec and only calls setsid(2), which is
    // async-signal-safe, allocates nothing and touches no lock held by another thread.
    unsafe {
        cmd.pre_exec(|| {
            nix::unistd::setsid().map_err(std::io::Error::from)?;
            Ok(())
        });
    }
}

/// Send `signal` to the postmaster `pid`. `Ok(false)` when it no longer exists.
pub fn signal(pid: i32, signal: Signal) -> std::io::Result<bool> {
    match kill(Pid::from_raw(pid), signal) {
        Ok(()) => Ok(true),
        Err(nix::errno::Errno::ESRCH) => Ok(false),
        Err(e) => Err(std::io::Error::from(e)),
    }
}

/// Wait until `pid` is gone, bounded by `timeout`. `true` when it is gone.
pub async fn wait_gone(pid: i32, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if !pid_alive(pid) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pid_file_parses_postgres_10_layout() {
        let s = "4242\n/var/lib/pg/data\n1700000000\n5432\n/var/run/postgresql\n127.0.0.1\n  5432001    65538\nready   \n";
        let pf = PidFile::parse(s).unwrap();
        assert_eq!(pf.pid, 4242);
        assert_eq!(pf.data_dir, PathBuf::from("/var/lib/pg/data"));
        assert_eq!(pf.port, Some(5432));
        assert_eq!(pf.socket_dir.as_deref(), Some("/var/run/postgresql"));
        assert_eq!(pf.status.as_deref(), Some("ready"));
        assert_eq!(PidFile::parse("4242\n"), None);
    }

    #[test]
    fn stale_pid_file_means_crashed() {
        let dir = tempfile::tempdir().unwrap();
        // PID 0 is never a postmaster.
        std::fs::write(dir.path().join("postmaster.pid"), format!("0\n{}\n1\n", dir.path().display()))
            .unwrap();
        assert!(matches!(state(dir.path()).unwrap(), PostmasterState::Crashed(_)));
        std::fs::remove_file(dir.path().join("postmaster.pid")).unwrap();
        assert_eq!(state(dir.path()).unwrap(), PostmasterState::Stopped);
        // Our own PID is alive but is not a postmaster of that directory.
        let me = std::process::id();
        std::fs::write(dir.path().join("postmaster.pid"), format!("{me}\n{}\n1\n", dir.path().display()))
            .unwrap();
        assert!(matches!(state(dir.path()).unwrap(), PostmasterState::Crashed(_)));
    }
}
