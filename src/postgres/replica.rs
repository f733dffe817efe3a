//! Replica creation (`P:postgresql/bootstrap.py create_replica, basebackup`): the methods of
//! `create_replica_methods` in order — built-in `basebackup` (pg_basebackup `-X stream`, two
//! attempts) or custom commands — until one succeeds. A failed method leaves no half-written data
//! directory behind.

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{error, info, instrument, warn};

use super::bootstrap::{process_user_options, script};
use super::conf::quote_conninfo_value;
use super::process;
use super::settings::ReplicaMethod;
use super::{PgError, Postgres, Result};

/// The member a replica is cloned from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CloneSource {
    /// Host.
    pub host: String,
    /// Port.
    pub port: u16,
    /// Database for the connection string (`postgres` when unset).
    pub dbname: Option<String>,
}

impl CloneSource {
    /// From a member's `conn_url` (`postgres://host:port/dbname`).
    pub fn from_conn_url(u: &str) -> Option<CloneSource> {
        let url = url::Url::parse(u).ok()?;
        let host = url.host_str()?.trim_start_matches('[').trim_end_matches(']').to_string();
        let db = url.path().trim_start_matches('/');
        Some(CloneSource {
            host,
            port: url.port().unwrap_or(5432),
            dbname: (!db.is_empty()).then(|| db.to_string()),
        })
    }
}

/// Longest one replica method may run.
const CLONE_TIMEOUT: Duration = Duration::from_secs(24 * 3600);
/// Pause between the two pg_basebackup attempts (Patroni: 5 s).
const BASEBACKUP_RETRY_DELAY: Duration = Duration::from_secs(5);

impl Postgres {
    /// Replication connection string to `src` with the replication user (password via pgpass).
    pub fn replication_conninfo(&self, src: &CloneSource) -> String {
        let r = &self.settings().replication;
        let mut parts = vec![
            ("dbname".to_string(), src.dbname.clone().unwrap_or_else(|| "postgres".into())),
            ("user".into(), r.username.clone()),
            ("host".into(), src.host.clone()),
            ("port".into(), src.port.to_string()),
        ];
        parts.extend(r.ssl.iter().map(|(k, v)| (k.clone(), v.clone())));
        parts
            .into_iter()
            .map(|(k, v)| format!("{k}={}", quote_conninfo_value(&v)))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Create the data directory of a replica from `source` (`None`: only methods marked
    /// `no_leader` are tried). Returns the name of the method that worked. On failure the data
    /// directory is left empty.
    #[instrument(skip_all, fields(data_dir = %self.data_dir().display()))]
    pub async fn create_replica(
        &self,
        source: Option<&CloneSource>,
        cancel: &CancellationToken,
    ) -> Result<String> {
        let s = self.settings();
        let mut methods = s.create_replica_methods.clone();
        if methods.is_empty() {
            methods.push("basebackup".into());
        }
        if source.is_none() {
            methods.retain(|m| s.replica_methods.get(m).is_some_and(|c| c.no_leader));
        }
        self.ensure_data_dir()?;
        self.write_pgpass()?;
        let connstring = source.map(|src| self.replication_conninfo(src)).unwrap_or_default();
        let mut failures = Vec::new();
        for m in &methods {
            if cancel.is_cancelled() {
                break;
            }
            let cfg = s.replica_methods.get(m).cloned().unwrap_or_default();
            let res = if m == "basebackup" {
                self.basebackup(&connstring, cancel).await
            } else {
                self.custom_replica_method(m, &cfg, &connstring, cancel).await
            };
            match res {
                Ok(()) => {
                    info!(method = %m, "replica has been created");
                    return Ok(m.clone());
                }
                Err(e) => {
                    error!(method = %m, "failed to create replica: {e}");
                    failures.push(format!("{m}: {e}"));
                    if !cfg.keep_data {
                        self.remove_data_directory()?;
                    }
                }
            }
        }
        self.remove_data_directory()?;
        Err(PgError::ReplicaFailed(if failures.is_empty() {
            "no usable method".into()
        } else {
            failures.join("; ")
        }))
    }

    /// pg_basebackup `--pgdata -X stream --dbname=<conninfo>` with `postgresql.basebackup` options;
    /// two attempts, the data directory emptied before each.
    async fn basebackup(&self, connstring: &str, cancel: &CancellationToken) -> Result<()> {
        let s = self.settings();
        let (options, errors) = process_user_options(
            "basebackup",
            &s.basebackup,
            &[
                "pgdata",
                "format",
                "wal-method",
                "xlog-method",
                "gzip",
                "version",
                "compress",
                "dbname",
                "host",
                "port",
                "username",
                "password",
            ],
        );
        for e in errors {
            error!("{e}");
        }
        let mut last = None;
        for attempt in 0..2 {
            if !self.data_directory_empty() {
                self.remove_data_directory()?;
            }
            let spec = self
                .tool("pg_basebackup")
                .arg(format!("--pgdata={}", self.data_dir().display()))
                .args(["-X", "stream"])
                .arg(format!("--dbname={connstring}"))
                .args(options.clone())
                .env("PGPASSFILE", s.pgpass.display().to_string())
                .timeout(CLONE_TIMEOUT);
            match process::run(spec, cancel).await {
                Ok(_) => return Ok(()),
                Err(e) => {
                    error!("Error when fetching backup: {e}");
                    last = Some(e);
                }
            }
            if attempt == 0 && !cancel.is_cancelled() {
                warn!("Trying again in {BASEBACKUP_RETRY_DELAY:?}");
                tokio::select! {
                    _ = tokio::time::sleep(BASEBACKUP_RETRY_DELAY) => {}
                    _ = cancel.cancelled() => {}
                }
            }
        }
        Err(last.map(PgError::from).unwrap_or(PgError::ReplicaFailed("basebackup cancelled".into())))
    }

    /// A custom method: `command` (default: the method name) with `--scope --role=replica
    /// --datadir --connstring` (unless `no_params`) and the section's extra keys as `--k=v`.
    async fn custom_replica_method(
        &self,
        name: &str,
        cfg: &ReplicaMethod,
        connstring: &str,
        cancel: &CancellationToken,
    ) -> Result<()> {
        let s = self.settings();
        if !self.data_directory_empty() {
            if cfg.keep_data {
                info!("Leaving data directory uncleaned");
            } else {
                self.remove_data_directory()?;
            }
        }
        let cmd = cfg.command.clone().unwrap_or_else(|| name.to_string());
        let mut parts = shlex::split(&cmd).filter(|p| !p.is_empty()).ok_or_else(|| PgError::Invalid {
            field: format!("postgresql.{name}.command"),
            msg: format!("cannot split command {cmd:?}"),
        })?;
        let prog = parts.remove(0);
        let mut args = parts;
        if !cfg.no_params {
            args.push(format!("--scope={}", s.scope));
            args.push("--role=replica".into());
            args.push(format!("--datadir={}", self.data_dir().display()));
            args.push(format!("--connstring={connstring}"));
        }
        for (k, v) in &cfg.extra {
            let v = match v {
                serde_json::Value::String(x) => x.clone(),
                other => other.to_string(),
            };
            args.push(format!("--{k}={v}"));
        }
        let spec = script(self, &format!("replica method {name}"), prog, args, CLONE_TIMEOUT)
            .env("PGPASSFILE", s.pgpass.display().to_string());
        process::run(spec, cancel).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clone_source_from_member_conn_url() {
        let c = CloneSource::from_conn_url("postgres://10.0.0.5:5433/postgres").unwrap();
        assert_eq!(c.host, "10.0.0.5");
        assert_eq!(c.port, 5433);
        assert_eq!(c.dbname.as_deref(), Some("postgres"));
        assert!(CloneSource::from_conn_url("not a url").is_none());
    }
}
