//! User callbacks (`postgresql.callbacks`): `on_start`, `on_stop`, `on_restart`, `on_reload`,
//! `on_role_change`, run as `<cmd> <action> <role> <scope>` like Patroni 4, one at a time: a newer
//! callback kills the process group of the previous one. Plus the synchronous scripts
//! `pre_promote` (exit code decides the promotion) and `before_stop`.
//!
//! Owns: callback processes. Their output goes to the agent's log.

use crate::config::validate::Callbacks as CallbackConfig;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tracing::{info, warn};

/// A callback event (Patroni `CallbackAction`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallbackAction {
    /// PostgreSQL started (or the agent found it running).
    OnStart,
    /// PostgreSQL stopped.
    OnStop,
    /// PostgreSQL restarted.
    OnRestart,
    /// Configuration reloaded.
    OnReload,
    /// The role changed (promotion, demotion).
    OnRoleChange,
}

impl CallbackAction {
    /// Patroni's action name, passed as the first argument.
    pub fn as_str(self) -> &'static str {
        match self {
            CallbackAction::OnStart => "on_start",
            CallbackAction::OnStop => "on_stop",
            CallbackAction::OnRestart => "on_restart",
            CallbackAction::OnReload => "on_reload",
            CallbackAction::OnRoleChange => "on_role_change",
        }
    }
}

/// Runs the callbacks of one agent.
#[derive(Clone)]
pub struct Callbacks {
    cfg: CallbackConfig,
    scope: String,
    running: Arc<Mutex<Option<i32>>>,
    metrics: Arc<crate::metrics::AgentMetrics>,
}

fn split(field: &str, cmd: &str) -> Option<(String, Vec<String>)> {
    match shlex::split(cmd) {
        Some(mut v) if !v.is_empty() => {
            let prog = v.remove(0);
            Some((prog, v))
        }
        _ => {
            warn!("{field}: cannot parse command {cmd:?}");
            None
        }
    }
}

fn relay(name: String, r: impl tokio::io::AsyncRead + Unpin + Send + 'static) {
    tokio::spawn(async move {
        let mut lines = BufReader::new(r).lines();
        while let Ok(Some(l)) = lines.next_line().await {
            info!("{name}: {l}");
        }
    });
}

impl Callbacks {
    /// For `postgresql.callbacks` of cluster `scope`.
    pub fn new(cfg: CallbackConfig, scope: &str) -> Callbacks {
        Callbacks {
            cfg,
            scope: scope.to_string(),
            running: Arc::new(Mutex::new(None)),
            metrics: Arc::new(crate::metrics::AgentMetrics::default()),
        }
    }

    /// Count failures in `metrics` (`praetor_callback_failures_total`).
    pub fn with_metrics(mut self, metrics: Arc<crate::metrics::AgentMetrics>) -> Callbacks {
        self.metrics = metrics;
        self
    }

    /// Replace the configuration (SIGHUP).
    pub fn set_config(&mut self, cfg: CallbackConfig) {
        self.cfg = cfg;
    }

    fn command(&self, a: CallbackAction) -> Option<&str> {
        match a {
            CallbackAction::OnStart => self.cfg.on_start.as_deref(),
            CallbackAction::OnStop => self.cfg.on_stop.as_deref(),
            CallbackAction::OnRestart => self.cfg.on_restart.as_deref(),
            CallbackAction::OnReload => self.cfg.on_reload.as_deref(),
            CallbackAction::OnRoleChange => self.cfg.on_role_change.as_deref(),
        }
    }

    /// Start the callback for `action` with `role` (`primary`, `replica`, `standby_leader`, …)
    /// without waiting for it; a callback still running is killed first (its whole process group).
    pub fn fire(&self, action: CallbackAction, role: &str) {
        let Some(cmd) = self.command(action) else {
            return;
        };
        let Some((prog, mut args)) = split(&format!("postgresql.callbacks.{}", action.as_str()), cmd) else {
            return;
        };
        args.extend([action.as_str().to_string(), role.to_string(), self.scope.clone()]);
        let mut guard = self.running.lock().expect("callback lock");
        if let Some(pid) = guard.take() {
            // A newer callback wins (Patroni kills the previous one).
            let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
        }
        let mut c = tokio::process::Command::new(&prog);
        c.args(&args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).process_group(0);
        match c.spawn() {
            Ok(mut child) => {
                info!("calling callback {cmd} {} {role} {}", action.as_str(), self.scope);
                let name = action.as_str().to_string();
                if let Some(o) = child.stdout.take() {
                    relay(name.clone(), o);
                }
                if let Some(e) = child.stderr.take() {
                    relay(name, e);
                }
                let pid = child.id().map(|p| p as i32);
                *guard = pid;
                let running = self.running.clone();
                let metrics = self.metrics.clone();
                let what = format!("{cmd} {}", action.as_str());
                tokio::spawn(async move {
                    let st = child.wait().await;
                    // Killed by a newer callback (SIGKILL) is not a failure of this one.
                    let killed = st.as_ref().is_ok_and(|s| {
                        std::os::unix::process::ExitStatusExt::signal(s) == Some(Signal::SIGKILL as i32)
                    });
                    if !killed && !st.as_ref().is_ok_and(|s| s.success()) {
                        warn!("callback {what} failed: {st:?}");
                        metrics.callback_failures.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    let mut g = running.lock().expect("callback lock");
                    if *g == pid {
                        *g = None;
                    }
                });
            }
            Err(e) => {
                warn!("callback {cmd} failed to start: {e}");
                self.metrics.callback_failures.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
    }

    /// Wait (bounded) for the running callback to finish: used at shutdown so `on_stop` runs.
    pub async fn wait_idle(&self, timeout: Duration) {
        let deadline = tokio::time::Instant::now() + timeout;
        while self.running.lock().expect("callback lock").is_some() && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Run a synchronous script (`pre_promote`, `before_stop`) without arguments, bounded by
/// `timeout`; `true` when it exited 0. A missing command counts as success.
pub async fn run_script(field: &str, cmd: Option<&str>, timeout: Duration) -> bool {
    let Some(cmd) = cmd else {
        return true;
    };
    let Some((prog, args)) = split(field, cmd) else {
        return false;
    };
    info!("calling {field} script: {cmd}");
    let mut c = tokio::process::Command::new(&prog);
    c.args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let mut child = match c.spawn() {
        Ok(c) => c,
        Err(e) => {
            warn!("{field} script {cmd} failed to start: {e}");
            return false;
        }
    };
    if let Some(o) = child.stdout.take() {
        relay(field.to_string(), o);
    }
    if let Some(e) = child.stderr.take() {
        relay(field.to_string(), e);
    }
    match tokio::time::timeout(timeout, child.wait()).await {
        Ok(Ok(st)) if st.success() => true,
        Ok(Ok(st)) => {
            warn!("{field} script {cmd} exited with {st}");
            false
        }
        Ok(Err(e)) => {
            warn!("{field} script {cmd}: {e}");
            false
        }
        Err(_) => {
            if let Some(pid) = child.id() {
                let _ = killpg(Pid::from_raw(pid as i32), Signal::SIGKILL);
            }
            warn!("{field} script {cmd} timed out after {timeout:?}");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn callback_gets_action_role_scope_and_newer_kills_older() {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("calls");
        let script = dir.path().join("cb.sh");
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\necho \"$@\" >> {}\n[ \"$1\" = on_stop ] && sleep 30\nexit 0\n",
                out.display()
            ),
        )
        .expect("write script");
        std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .expect("chmod");
        let s = script.display().to_string();
        let cfg = CallbackConfig {
            on_reload: None,
            on_restart: None,
            on_role_change: Some(s.clone()),
            on_start: None,
            on_stop: Some(s),
        };
        let cb = Callbacks::new(cfg, "demo");
        cb.fire(CallbackAction::OnStop, "replica");
        tokio::time::sleep(Duration::from_millis(300)).await;
        cb.fire(CallbackAction::OnRoleChange, "primary");
        cb.wait_idle(Duration::from_secs(5)).await;
        let text = std::fs::read_to_string(&out).expect("calls recorded");
        assert_eq!(text, "on_stop replica demo\non_role_change primary demo\n");
        // The sleeping on_stop was killed: nothing is left running.
        assert!(cb.running.lock().expect("lock").is_none());
    }

    #[tokio::test]
    async fn pre_promote_exit_code_decides() {
        assert!(run_script("pre_promote", Some("true"), Duration::from_secs(5)).await);
        assert!(!run_script("pre_promote", Some("false"), Duration::from_secs(5)).await);
        assert!(run_script("pre_promote", None, Duration::from_secs(5)).await);
    }
}
