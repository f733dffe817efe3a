//! The one subprocess helper (STYLE.md §3.5). Every PostgreSQL binary and user script except the
//! postmaster itself runs through [`run`]: explicit environment, stdin from `/dev/null`, its own
//! process group (so a timeout kills `initdb`'s children too), stderr lines relayed to tracing with a
//! `cmd` field, and a tail of stderr kept for the error.
//!
//! When the agent runs as root, commands run as the PostgreSQL OS user ([`RunAs`]), because
//! PostgreSQL refuses to run as root.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::{Gid, Pid, Uid, User};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, BufReader};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

/// How many stderr lines an error keeps.
const STDERR_TAIL_LINES: usize = 30;
/// Upper bound of captured stdout (bytes); the rest is discarded.
const STDOUT_CAPTURE_LIMIT: usize = 8 * 1024 * 1024;

/// A subprocess failed. Every variant names the command.
#[derive(Debug, thiserror::Error)]
pub enum ProcError {
    /// The program could not be started.
    #[error("start {name} ({program}): {source}")]
    Spawn {
        /// Short command name.
        name: String,
        /// Program path.
        program: String,
        /// OS error.
        #[source]
        source: std::io::Error,
    },
    /// The program exited unsuccessfully.
    #[error("{name} exited with {status}: {}", stderr_tail.join(" | "))]
    Failed {
        /// Short command name.
        name: String,
        /// Exit status.
        status: ExitStatus,
        /// Last stderr lines.
        stderr_tail: Vec<String>,
    },
    /// The program ran longer than its timeout; its process group was killed.
    #[error("{name} did not finish within {after:?} and was killed")]
    Timeout {
        /// Short command name.
        name: String,
        /// The timeout.
        after: Duration,
    },
    /// The caller cancelled; the process group was killed.
    #[error("{name} was cancelled and killed")]
    Cancelled {
        /// Short command name.
        name: String,
    },
    /// Waiting for the program failed.
    #[error("wait for {name}: {source}")]
    Wait {
        /// Short command name.
        name: String,
        /// OS error.
        #[source]
        source: std::io::Error,
    },
}

/// Most supplementary groups kept for the PostgreSQL user.
const MAX_GROUPS: usize = 32;

/// The OS identity a command runs under when the agent is root: user, primary group and the
/// user's supplementary groups (e.g. `ssl-cert` for Debian's snakeoil key), as a login would have.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RunAs {
    /// User id.
    pub uid: Uid,
    /// Primary group id.
    pub gid: Gid,
    groups: [u32; MAX_GROUPS],
    ngroups: usize,
}

impl RunAs {
    /// `Some(user)` when the agent runs as root (PostgreSQL refuses root), `None` otherwise (commands
    /// keep the agent's identity). Errors when running as root and `user` does not exist.
    pub fn for_agent(user: &str) -> Result<Option<RunAs>, std::io::Error> {
        if !Uid::effective().is_root() {
            return Ok(None);
        }
        match User::from_name(user) {
            Ok(Some(u)) => {
                let mut r = RunAs::new(u.uid, u.gid);
                let name = std::ffi::CString::new(u.name.clone()).map_err(std::io::Error::other)?;
                if let Ok(list) = nix::unistd::getgrouplist(&name, u.gid) {
                    r.ngroups = 0;
                    for g in list.into_iter().take(MAX_GROUPS) {
                        r.groups[r.ngroups] = g.as_raw();
                        r.ngroups += 1;
                    }
                }
                Ok(Some(r))
            }
            Ok(None) => Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("the agent runs as root and OS user {user:?} (postgresql OS user) does not exist"),
            )),
            Err(e) => Err(std::io::Error::other(e)),
        }
    }

    /// An identity with no supplementary groups besides `gid`.
    pub fn new(uid: Uid, gid: Gid) -> RunAs {
        let mut groups = [0; MAX_GROUPS];
        groups[0] = gid.as_raw();
        RunAs { uid, gid, groups, ngroups: 1 }
    }

    /// Supplementary groups.
    pub fn groups(&self) -> Vec<Gid> {
        self.groups[..self.ngroups].iter().map(|g| Gid::from_raw(*g)).collect()
    }

    /// Give `path` to this identity (no-op errors are returned).
    pub fn chown(&self, path: &Path) -> std::io::Result<()> {
        nix::unistd::chown(path, Some(self.uid), Some(self.gid)).map_err(std::io::Error::other)
    }
}

/// Which environment a command gets.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum EnvPolicy {
    /// `PATH`, locale and `TZ` from the agent plus the spec's variables (PostgreSQL binaries).
    #[default]
    Minimal,
    /// The agent's whole environment plus the spec's variables (user scripts, as Patroni does).
    Inherit,
}

/// What happens to stdout.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum StdoutMode {
    /// Each line is logged at debug level.
    #[default]
    Log,
    /// Captured and returned in [`CmdOutput::stdout`].
    Capture,
}

/// A command to run.
#[derive(Clone, Debug)]
pub struct CmdSpec {
    /// Short name used in logs and errors (`initdb`, `pg_basebackup`, `replica method wal_e`).
    pub name: String,
    /// Program to run.
    pub program: PathBuf,
    /// Arguments.
    pub args: Vec<OsString>,
    /// Extra environment variables.
    pub env: Vec<(String, String)>,
    /// Base environment.
    pub env_policy: EnvPolicy,
    /// Working directory.
    pub cwd: Option<PathBuf>,
    /// The command is killed (with its process group) after this long.
    pub timeout: Duration,
    /// Run under this identity.
    pub run_as: Option<RunAs>,
    /// Stdout handling.
    pub stdout: StdoutMode,
    /// Bytes written to stdin (then closed); `None` = `/dev/null`.
    pub stdin: Option<Vec<u8>>,
}

impl CmdSpec {
    /// A spec with the defaults: minimal env, logged stdout, no stdin, 60 s timeout.
    pub fn new(name: impl Into<String>, program: impl Into<PathBuf>) -> CmdSpec {
        CmdSpec {
            name: name.into(),
            program: program.into(),
            args: Vec::new(),
            env: Vec::new(),
            env_policy: EnvPolicy::Minimal,
            cwd: None,
            timeout: Duration::from_secs(60),
            run_as: None,
            stdout: StdoutMode::Log,
            stdin: None,
        }
    }

    /// Append one argument.
    pub fn arg(mut self, a: impl Into<OsString>) -> Self {
        self.args.push(a.into());
        self
    }

    /// Append arguments.
    pub fn args<I: IntoIterator<Item = S>, S: Into<OsString>>(mut self, it: I) -> Self {
        self.args.extend(it.into_iter().map(Into::into));
        self
    }

    /// Add an environment variable.
    pub fn env(mut self, k: impl Into<String>, v: impl Into<String>) -> Self {
        self.env.push((k.into(), v.into()));
        self
    }

    /// Set the timeout.
    pub fn timeout(mut self, t: Duration) -> Self {
        self.timeout = t;
        self
    }

    /// Run as this identity.
    pub fn run_as(mut self, r: Option<RunAs>) -> Self {
        self.run_as = r;
        self
    }

    /// Capture stdout.
    pub fn capture_stdout(mut self) -> Self {
        self.stdout = StdoutMode::Capture;
        self
    }
}

/// Result of a finished command.
#[derive(Debug)]
pub struct CmdOutput {
    /// Exit status.
    pub status: ExitStatus,
    /// Captured stdout ([`StdoutMode::Capture`]), else empty.
    pub stdout: String,
    /// Last stderr lines.
    pub stderr_tail: Vec<String>,
}

/// Environment variables copied from the agent under [`EnvPolicy::Minimal`].
const MINIMAL_ENV: &[&str] = &[
    "PATH",
    "LANG",
    "LC_ALL",
    "LC_CTYPE",
    "LC_COLLATE",
    "LC_MESSAGES",
    "LC_MONETARY",
    "LC_NUMERIC",
    "LC_TIME",
    "TZ",
];

/// Build the `Command` shared by [`run`] and the postmaster start: explicit environment, identity,
/// working directory. Stdio and process group are up to the caller.
pub(crate) fn base_command(
    program: &Path,
    args: &[OsString],
    env: &[(String, String)],
    policy: &EnvPolicy,
    cwd: Option<&Path>,
    run_as: Option<RunAs>,
) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args);
    cmd.env_clear();
    match policy {
        EnvPolicy::Minimal => {
            for k in MINIMAL_ENV {
                if let Some(v) = std::env::var_os(k) {
                    cmd.env(k, v);
                }
            }
            if std::env::var_os("PATH").is_none() {
                cmd.env("PATH", "/usr/local/bin:/usr/bin:/bin");
            }
        }
        EnvPolicy::Inherit => {
            cmd.envs(std::env::vars_os());
        }
    }
    if let Some(r) = run_as {
        switch_identity(&mut cmd, r);
        if let Ok(Some(u)) = User::from_uid(r.uid) {
            cmd.env("HOME", &u.dir).env("USER", &u.name).env("LOGNAME", &u.name);
        }
    }
    cmd.envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    if let Some(dir) = cwd {
        cmd.current_dir(dir);
    } else if run_as.is_some() {
        // The agent's cwd may not be readable by the PostgreSQL user.
        cmd.current_dir("/");
    }
    cmd
}

/// Drop root for the child: supplementary groups, group, then user (std's `uid()` would drop all
/// supplementary groups, and cannot set them).
#[allow(unsafe_code)]
fn switch_identity(cmd: &mut tokio::process::Command, r: RunAs) {
    // SAFETY: the closure runs in the forked child before exec. It only issues the setgroups(2),
    // setgid(2) and setuid(2) system calls on data copied in before the fork: no allocation, no
    // locks, nothing that is not async-signal-safe.
    unsafe {
        cmd.pre_exec(move || {
            let groups: [Gid; MAX_GROUPS] = std::array::from_fn(|i| Gid::from_raw(r.groups[i]));
            nix::unistd::setgroups(&groups[..r.ngroups]).map_err(std::io::Error::from)?;
            nix::unistd::setgid(r.gid).map_err(std::io::Error::from)?;
            nix::unistd::setuid(r.uid).map_err(std::io::Error::from)?;
            Ok(())
        });
    }
}

/// Run a command to completion. `Ok` only for exit status 0; a non-zero exit is
/// [`ProcError::Failed`] with the stderr tail. Never blocks longer than `spec.timeout`.
pub async fn run(spec: CmdSpec, cancel: &CancellationToken) -> Result<CmdOutput, ProcError> {
    let name = spec.name.clone();
    let out = run_unchecked(spec, cancel).await?;
    if out.status.success() {
        Ok(out)
    } else {
        Err(ProcError::Failed { name, status: out.status, stderr_tail: out.stderr_tail })
    }
}

/// Like [`run`], but a non-zero exit is returned as a normal [`CmdOutput`] (for tools whose
/// failure output is the answer, like `pg_waldump`).
pub async fn run_unchecked(spec: CmdSpec, cancel: &CancellationToken) -> Result<CmdOutput, ProcError> {
    let mut cmd = base_command(
        &spec.program,
        &spec.args,
        &spec.env,
        &spec.env_policy,
        spec.cwd.as_deref(),
        spec.run_as,
    );
    cmd.stdin(if spec.stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    debug!(cmd = %spec.name, program = %spec.program.display(), args = ?spec.args, "running");
    let mut child = cmd.spawn().map_err(|source| ProcError::Spawn {
        name: spec.name.clone(),
        program: spec.program.display().to_string(),
        source,
    })?;
    let pgid = child.id().map(|p| Pid::from_raw(p as i32));

    if let (Some(data), Some(mut stdin)) = (spec.stdin.clone(), child.stdin.take()) {
        tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            let _ = stdin.write_all(&data).await;
            let _ = stdin.shutdown().await;
        });
    }
    let stderr_task = tokio::spawn(relay_lines(child.stderr.take(), spec.name.clone(), true));
    let stdout_task = match spec.stdout {
        StdoutMode::Capture => tokio::spawn(capture(child.stdout.take())),
        StdoutMode::Log => {
            let name = spec.name.clone();
            let out = child.stdout.take();
            tokio::spawn(async move {
                relay_lines(out, name, false).await;
                String::new()
            })
        }
    };

    let status = tokio::select! {
        st = child.wait() => st.map_err(|source| ProcError::Wait { name: spec.name.clone(), source })?,
        _ = tokio::time::sleep(spec.timeout) => {
            kill_group(pgid, &spec.name);
            let _ = child.wait().await;
            return Err(ProcError::Timeout { name: spec.name, after: spec.timeout });
        }
        _ = cancel.cancelled() => {
            kill_group(pgid, &spec.name);
            let _ = child.wait().await;
            return Err(ProcError::Cancelled { name: spec.name });
        }
    };
    // Children of the command may keep the pipes open; don't wait for them forever.
    let stderr_tail = tokio::time::timeout(Duration::from_secs(2), stderr_task)
        .await
        .ok()
        .and_then(Result::ok)
        .map(Vec::from)
        .unwrap_or_default();
    let stdout = tokio::time::timeout(Duration::from_secs(2), stdout_task)
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default();
    debug!(cmd = %spec.name, %status, "finished");
    Ok(CmdOutput { status, stdout, stderr_tail })
}

fn kill_group(pgid: Option<Pid>, name: &str) {
    if let Some(pgid) = pgid {
        warn!(cmd = %name, pgid = pgid.as_raw(), "killing process group");
        let _ = killpg(pgid, Signal::SIGKILL);
    }
}

async fn capture<R: AsyncRead + Unpin>(r: Option<R>) -> String {
    let Some(r) = r else { return String::new() };
    let mut buf = Vec::new();
    let _ = r.take(STDOUT_CAPTURE_LIMIT as u64).read_to_end(&mut buf).await;
    String::from_utf8_lossy(&buf).into_owned()
}

/// Relay each line to tracing (`info` for stderr, `debug` for stdout) and keep the last lines.
async fn relay_lines<R: AsyncRead + Unpin>(r: Option<R>, name: String, is_err: bool) -> VecDeque<String> {
    let mut tail = VecDeque::new();
    let Some(r) = r else { return tail };
    let mut reader = BufReader::new(r);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                let line = String::from_utf8_lossy(&buf).trim_end().to_string();
                if is_err {
                    info!(cmd = %name, fd = "stderr", "{line}");
                    if tail.len() == STDERR_TAIL_LINES {
                        tail.pop_front();
                    }
                    tail.push_back(line);
                } else {
                    debug!(cmd = %name, fd = "stdout", "{line}");
                }
            }
        }
    }
    tail
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn failing_command_reports_status_and_stderr_tail() {
        let spec = CmdSpec::new("sh", "/bin/sh").args(["-c", "echo first >&2; echo boom >&2; exit 3"]);
        let err = run(spec, &CancellationToken::new()).await.unwrap_err();
        match err {
            ProcError::Failed { status, stderr_tail, .. } => {
                assert_eq!(status.code(), Some(3));
                assert_eq!(stderr_tail, vec!["first".to_string(), "boom".to_string()]);
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[tokio::test]
    async fn timeout_kills_the_whole_process_group() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("pid");
        // The grandchild would survive a plain kill of the shell.
        let script = format!("sleep 30 & echo $! > {}; wait", marker.display());
        let spec =
            CmdSpec::new("sh", "/bin/sh").args(["-c", script.as_str()]).timeout(Duration::from_millis(300));
        let started = std::time::Instant::now();
        let err = run(spec, &CancellationToken::new()).await.unwrap_err();
        assert!(matches!(err, ProcError::Timeout { .. }), "{err:?}");
        assert!(started.elapsed() < Duration::from_secs(5));
        let pid: i32 = std::fs::read_to_string(&marker).unwrap().trim().parse().unwrap();
        // Give the kernel a moment to deliver SIGKILL; the orphan is reaped by init.
        let mut gone = false;
        for _ in 0..50 {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            if stat.is_empty() || stat.contains(") Z ") {
                gone = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(gone, "grandchild {pid} survived the timeout");
    }

    #[tokio::test]
    async fn commands_run_as_the_postgres_user_with_its_groups_when_root() {
        let Ok(Some(r)) = RunAs::for_agent("postgres") else {
            eprintln!("SKIP: not root or no postgres user");
            return;
        };
        let spec = CmdSpec::new("id", "/usr/bin/id").arg("-G").run_as(Some(r)).capture_stdout();
        let out = run(spec, &CancellationToken::new()).await.unwrap();
        let mut got: Vec<u32> = out.stdout.split_whitespace().map(|g| g.parse().unwrap()).collect();
        // What the system says the user's groups are, asked independently.
        let all = run(
            CmdSpec::new("id", "/usr/bin/id").args(["-G", "postgres"]).capture_stdout(),
            &CancellationToken::new(),
        )
        .await
        .unwrap();
        let mut want: Vec<u32> = all.stdout.split_whitespace().map(|g| g.parse().unwrap()).collect();
        got.sort();
        want.sort();
        want.dedup();
        assert_eq!(got, want);
        let spec = CmdSpec::new("id", "/usr/bin/id").arg("-u").run_as(Some(r)).capture_stdout();
        let out = run(spec, &CancellationToken::new()).await.unwrap();
        assert_eq!(out.stdout.trim(), r.uid.to_string());
    }

    #[tokio::test]
    async fn environment_is_explicit_and_stdout_captured() {
        // A variable of the agent (cargo sets CARGO_PKG_NAME for tests) does not leak under the minimal policy.
        let spec = CmdSpec::new("sh", "/bin/sh")
            .args(["-c", "echo \"$PRAETOR_X|$CARGO_PKG_NAME\""])
            .env("PRAETOR_X", "1")
            .capture_stdout();
        let out = run(spec, &CancellationToken::new()).await.unwrap();
        assert_eq!(out.stdout.trim(), "1|");
    }
}
