//! Bootstrap of a new cluster (`P:postgresql/bootstrap.py`): `initdb` with `bootstrap.initdb`
//! options or a custom `bootstrap.method` script, start, then the roles from
//! `postgresql.authentication` and the `post_bootstrap` script.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio_postgres::Client;
use tokio_util::sync::CancellationToken;
use tracing::{info, instrument, warn};

use super::conf::{self, ConfRole};
use super::process::{self, CmdSpec, EnvPolicy};
use super::settings::{Credentials, CustomBootstrap};
use super::{PgError, Postgres, Result, StartOutcome};

/// Turn `bootstrap.initdb` / `postgresql.basebackup` options into long options, as Patroni does
/// (`Bootstrap.process_user_options`): a map gives `--k=v` per entry; a list takes `"flag"` →
/// `--flag` and single-key maps `{k: v}` → `--k=v`. Surrounding quotes of values are removed.
/// Returns the options and one message per rejected item (not allowed or malformed).
pub fn process_user_options(tool: &str, options: &Value, not_allowed: &[&str]) -> (Vec<String>, Vec<String>) {
    let mut out = Vec::new();
    let mut errors = Vec::new();
    let allowed = |name: &str, errors: &mut Vec<String>| {
        if not_allowed.contains(&name) {
            errors.push(format!("{name} option for {tool} is not allowed"));
            false
        } else {
            true
        }
    };
    let scalar = |v: &Value| match v {
        Value::String(s) => Some(unquote(s)),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    };
    match options {
        Value::Null => {}
        Value::Object(m) => {
            for (k, v) in m {
                match scalar(v) {
                    Some(v) if !k.is_empty() && !v.is_empty() && allowed(k, &mut errors) => {
                        out.push(format!("--{k}={v}"));
                    }
                    _ => {}
                }
            }
        }
        Value::Array(items) => {
            for item in items {
                match item {
                    Value::String(s) => {
                        if allowed(s, &mut errors) {
                            out.push(format!("--{s}"));
                        }
                    }
                    Value::Object(m) if m.len() == 1 => {
                        let (k, v) = m.iter().next().expect("one entry");
                        match v {
                            Value::String(v) => {
                                if allowed(k, &mut errors) {
                                    out.push(format!("--{k}={}", unquote(v)));
                                }
                            }
                            _ => errors.push(format!(
                                "Error when parsing {tool} key-value option {k}: value should be a string"
                            )),
                        }
                    }
                    other => errors.push(format!(
                        "Error when parsing {tool} option {other}: value should be string value or a single key-value pair"
                    )),
                }
            }
        }
        _ => errors.push(format!("{tool} options must be list or dict")),
    }
    (out, errors)
}

fn unquote(s: &str) -> String {
    let t = s.trim();
    if t.len() >= 2
        && ((t.starts_with('"') && t.ends_with('"')) || (t.starts_with('\'') && t.ends_with('\'')))
    {
        t[1..t.len() - 1].to_string()
    } else {
        s.to_string()
    }
}

/// Quote an SQL identifier.
pub fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// Quote an SQL string literal (standard_conforming_strings on).
pub fn quote_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// A libpq URL for `user` at `host:port` (a unix socket directory is percent-encoded).
pub fn connection_url(host: &str, port: u16, user: &str, dbname: &str) -> String {
    let enc = |s: &str| {
        s.bytes()
            .map(|b| match b {
                b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect::<String>()
    };
    let host = if host.contains(':') && !host.starts_with('/') { format!("[{host}]") } else { enc(host) };
    format!("postgres://{}@{host}:{port}/{}", enc(user), enc(dbname))
}

fn split_command(field: &str, cmd: &str) -> Result<(String, Vec<String>)> {
    let mut parts = shlex::split(cmd).ok_or_else(|| PgError::Invalid {
        field: field.into(),
        msg: format!("cannot split command {cmd:?}"),
    })?;
    if parts.is_empty() {
        return Err(PgError::Invalid { field: field.into(), msg: "empty command".into() });
    }
    let prog = parts.remove(0);
    Ok((prog, parts))
}

/// A user script spec: the agent's environment (as Patroni gives scripts), PostgreSQL user.
pub(crate) fn script(
    pg: &Postgres,
    name: &str,
    program: String,
    args: Vec<String>,
    timeout: Duration,
) -> CmdSpec {
    let mut spec = CmdSpec::new(name, program).args(args).run_as(pg.run_as()).timeout(timeout);
    spec.env_policy = EnvPolicy::Inherit;
    spec
}

fn value_arg(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Longest a bootstrap step (initdb, custom script) may run.
const BOOTSTRAP_TIMEOUT: Duration = Duration::from_secs(3600);

impl Postgres {
    /// Initialize, start and finish a new cluster: `initdb` (or the custom `bootstrap.method`),
    /// the configuration files, start as primary, wait until out of recovery (bounded by
    /// `pg_ctl_timeout`), then [`Self::post_bootstrap`].
    #[instrument(skip_all, fields(data_dir = %self.data_dir().display()))]
    pub async fn bootstrap(&self, cancel: &CancellationToken) -> Result<StartOutcome> {
        let b = &self.settings().bootstrap;
        let custom = b
            .method
            .as_deref()
            .filter(|m| *m != "initdb")
            .and_then(|m| b.custom.get(m).map(|c| (m, c)))
            .filter(|(_, c)| !c.command.is_empty());
        let role = match custom {
            Some((name, c)) => self.custom_bootstrap(name, c, cancel).await?,
            None => {
                self.initdb(cancel).await?;
                ConfRole::Primary
            }
        };
        let started = self.start(&role).await?;
        self.wait_until_primary(self.settings().pg_ctl_timeout).await?;
        self.post_bootstrap(cancel).await?;
        Ok(started)
    }

    /// Run `initdb` with `bootstrap.initdb` options, `--username` and `--pwfile` of the superuser.
    pub async fn initdb(&self, cancel: &CancellationToken) -> Result<()> {
        let s = self.settings();
        let (mut options, errors) = process_user_options(
            "initdb",
            &s.bootstrap.initdb,
            &["pgdata", "nosync", "pwfile", "sync-only", "version"],
        );
        if let Some(e) = errors.into_iter().next() {
            return Err(PgError::Invalid { field: "bootstrap.initdb".into(), msg: e });
        }
        self.ensure_data_dir()?;
        options.push(format!("--username={}", s.superuser.username));
        let pwfile = match &s.superuser.password {
            Some(p) => {
                let nanos = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos())
                    .unwrap_or(0);
                let path =
                    std::env::temp_dir().join(format!("praetor-pwfile-{}-{nanos}", std::process::id()));
                conf::write_if_changed(&path, p.expose(), 0o600, self.run_as())
                    .map_err(PgError::io("write initdb password file", &path))?;
                options.push(format!("--pwfile={}", path.display()));
                Some(path)
            }
            None => None,
        };
        info!(?options, "running initdb");
        let res = process::run(
            self.tool("initdb")
                .arg(format!("--pgdata={}", self.data_dir().display()))
                .args(options)
                .timeout(BOOTSTRAP_TIMEOUT),
            cancel,
        )
        .await;
        if let Some(p) = pwfile {
            let _ = std::fs::remove_file(p);
        }
        res?;
        self.append_bootstrap_pg_hba()?;
        Ok(())
    }

    /// Legacy `bootstrap.pg_hba`: appended to the initdb-made pg_hba.conf when `postgresql.pg_hba`
    /// is empty.
    fn append_bootstrap_pg_hba(&self) -> Result<()> {
        let s = self.settings();
        if !s.pg_hba.is_empty() || s.bootstrap.pg_hba.is_empty() {
            return Ok(());
        }
        let p = s.config_dir().join("pg_hba.conf");
        let mut text = std::fs::read_to_string(&p).unwrap_or_default();
        for l in &s.bootstrap.pg_hba {
            text.push_str(l);
            text.push('\n');
        }
        conf::write_if_changed(&p, &text, 0o600, self.run_as()).map_err(PgError::io("write", &p))?;
        Ok(())
    }

    /// Run a custom bootstrap script (`command --scope=.. --datadir=..` plus extra `--k=v`), then
    /// decide the recovery configuration: `recovery_conf` given → recovery with those settings,
    /// `keep_existing_recovery_conf` → signal files kept, else none.
    async fn custom_bootstrap(
        &self,
        name: &str,
        c: &CustomBootstrap,
        cancel: &CancellationToken,
    ) -> Result<ConfRole> {
        let s = self.settings();
        self.ensure_data_dir()?;
        let field = format!("bootstrap.{name}.command");
        let (prog, mut args) = split_command(&field, &c.command)?;
        if !c.no_params {
            args.push(format!("--scope={}", s.scope));
            args.push(format!("--datadir={}", self.data_dir().display()));
        }
        for (k, v) in &c.extra {
            if !matches!(k.as_str(), "scope" | "datadir") {
                args.push(format!("--{k}={}", value_arg(v)));
            }
        }
        info!(command = %c.command, "running custom bootstrap script");
        process::run(script(self, &format!("bootstrap {name}"), prog, args, BOOTSTRAP_TIMEOUT), cancel)
            .await?;
        // Never let a leftover trigger file promote the server by surprise.
        let trigger = self.data_dir().join("promote");
        if trigger.exists() {
            let _ = std::fs::remove_file(&trigger);
        }
        if let Some(rc) = &c.recovery_conf {
            return Ok(ConfRole::Recovery { recovery_conf: rc.clone() });
        }
        if c.keep_existing_recovery_conf {
            if self.data_dir().join("standby.signal").exists() {
                return Ok(ConfRole::Replica { upstream: None });
            }
            if self.data_dir().join("recovery.signal").exists() {
                return Ok(ConfRole::Recovery { recovery_conf: s.recovery_conf.clone() });
            }
        }
        Ok(ConfRole::Primary)
    }

    /// Wait until the local server answers and is not in recovery.
    pub async fn wait_until_primary(&self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let obs = self.observe().await;
            if obs.is_primary() {
                return Ok(());
            }
            if !self.is_running() {
                return Err(PgError::NotRunning);
            }
            if Instant::now() >= deadline {
                return Err(PgError::StartFailed { reason: format!("still in recovery after {timeout:?}") });
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// After the first start: set the superuser password, run `post_bootstrap` with a superuser
    /// URL (PGPASSFILE set), create the replication role and the rewind role with the function
    /// grants pg_rewind needs, and the deprecated `bootstrap.users`.
    pub async fn post_bootstrap(&self, cancel: &CancellationToken) -> Result<()> {
        let s = self.settings();
        let client = self.connect().await?;
        if s.superuser.password.is_some() {
            create_or_update_role(&client, &s.superuser, &["SUPERUSER".into()]).await?;
        }
        if let Some(cmd) = &s.bootstrap.post_bootstrap {
            let (prog, mut args) = split_command("bootstrap.post_bootstrap", cmd)?;
            let conn = self.local_conn(&s.superuser);
            args.push(connection_url(&conn.host, conn.port, &conn.user, &conn.dbname));
            self.write_pgpass()?;
            let mut spec = script(self, "post_bootstrap", prog, args, BOOTSTRAP_TIMEOUT)
                .env("PGPASSFILE", s.pgpass.display().to_string())
                .env("PGOPTIONS", "-c synchronous_commit=local -c statement_timeout=0");
            spec.cwd = None;
            info!(command = %cmd, "running post_bootstrap");
            process::run(spec, cancel).await?;
        }
        create_or_update_role(&client, &s.replication, &["REPLICATION".into()]).await?;
        if let Some(rw) = &s.rewind
            && rw.username != s.superuser.username
        {
            create_or_update_role(&client, rw, &[]).await?;
            for f in [
                "pg_ls_dir(text, boolean, boolean)",
                "pg_stat_file(text, boolean)",
                "pg_read_binary_file(text)",
                "pg_read_binary_file(text, bigint, bigint, boolean)",
            ] {
                let sql =
                    format!("GRANT EXECUTE ON function pg_catalog.{f} TO {}", quote_ident(&rw.username));
                client.batch_execute(&sql).await.map_err(PgError::sql("grant rewind functions"))?;
            }
        }
        if !s.bootstrap.users.is_empty() {
            warn!(
                "bootstrap.users is deprecated (removed in Patroni 4.0.0); create users in a bootstrap.post_bootstrap script"
            );
            for (name, u) in &s.bootstrap.users {
                let creds = Credentials {
                    username: name.clone(),
                    password: u.password.clone(),
                    ssl: BTreeMap::new(),
                };
                create_or_update_role(&client, &creds, &u.options).await?;
            }
        }
        info!("post-bootstrap finished");
        Ok(())
    }
}

/// `CREATE ROLE` or `ALTER ROLE` (when it exists) with `options` + `LOGIN` + the password, with
/// statement logging suppressed so the password stays out of the server log.
pub async fn create_or_update_role(client: &Client, creds: &Credentials, options: &[String]) -> Result<()> {
    let mut opts: Vec<String> = Vec::new();
    for o in options {
        let up = o.trim().to_ascii_uppercase();
        if up.is_empty() || !up.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ' ') {
            warn!(role = %creds.username, option = %o, "ignoring role option with unexpected characters");
            continue;
        }
        opts.push(up);
    }
    if !opts.iter().any(|o| o == "LOGIN" || o == "NOLOGIN") {
        opts.push("LOGIN".into());
    }
    if let Some(p) = &creds.password {
        opts.push(format!("PASSWORD {}", quote_literal(p.expose())));
    }
    let sql = format!(
        "SET log_statement TO none; SET log_min_duration_statement TO -1; SET log_min_error_statement TO 'log'; \
         DO $praetor$ BEGIN SET local synchronous_commit = 'local'; \
         PERFORM * FROM pg_catalog.pg_authid WHERE rolname = {lit}; \
         IF FOUND THEN ALTER ROLE {id} WITH {o}; ELSE CREATE ROLE {id} WITH {o}; END IF; END;$praetor$; \
         RESET log_min_error_statement; RESET log_min_duration_statement; RESET log_statement",
        lit = quote_literal(&creds.username),
        id = quote_ident(&creds.username),
        o = opts.join(" ")
    );
    client.batch_execute(&sql).await.map_err(PgError::sql("create or update role"))?;
    info!(role = %creds.username, "role created or updated");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn user_options_accept_list_and_map_forms() {
        // bootstrap.py: process_user_options
        let (o, e) = process_user_options(
            "initdb",
            &json!(["data-checksums", {"encoding": "UTF8"}, {"locale": "\"en US\""}]),
            &["pgdata"],
        );
        assert_eq!(o, vec!["--data-checksums", "--encoding=UTF8", "--locale=en US"]);
        assert!(e.is_empty());
        let (o, _) =
            process_user_options("pg_basebackup", &json!({"max-rate": "100M", "checkpoint": "fast"}), &[]);
        assert_eq!(o, vec!["--max-rate=100M", "--checkpoint=fast"]);
        let (o, e) = process_user_options("initdb", &json!(["pgdata", {"a": "1", "b": "2"}, 5]), &["pgdata"]);
        assert!(o.is_empty());
        assert_eq!(e.len(), 3);
        let (_, e) = process_user_options("initdb", &json!("oops"), &[]);
        assert_eq!(e, vec!["initdb options must be list or dict"]);
    }

    #[test]
    fn quoting_and_urls() {
        assert_eq!(quote_ident("we\"ird"), "\"we\"\"ird\"");
        assert_eq!(quote_literal("it's"), "'it''s'");
        assert_eq!(
            connection_url("/tmp/sock dir", 5432, "postgres", "postgres"),
            "postgres://postgres@%2Ftmp%2Fsock%20dir:5432/postgres"
        );
        assert_eq!(connection_url("::1", 5, "u", "d"), "postgres://u@[::1]:5/d");
    }
}
