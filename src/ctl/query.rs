//! `query`: run SQL on a member, connecting with libpq parameters derived from its `conn_url` (as
//! patronictl's `get_cursor`): the leader by default, `-r ROLE` or `-m MEMBER`; `-U`, `--password`,
//! `-d`. Results are printed as text (the simple query protocol), `tsv` by default.

use super::actions::timestamp;
use super::dsn::{CtlRole, members_with_role};
use super::output::{Format, print_output};
use crate::dcs::model::{Cluster, Member};
use serde_json::Value;
use std::time::Duration;

/// Connection parameters given on the command line.
#[derive(Clone, Debug, Default)]
pub struct ConnectParams {
    /// `-U`.
    pub user: Option<String>,
    /// `--password` (prompted).
    pub password: Option<String>,
    /// `-d`.
    pub dbname: Option<String>,
}

/// `get_any_member`: the member named, else the first with `role` (leader by default).
pub fn pick_member<'a>(
    cluster: &'a Cluster,
    role: Option<CtlRole>,
    member: Option<&str>,
) -> Option<&'a Member> {
    match member {
        Some(name) => cluster.members.iter().find(|m| m.name == name),
        None => members_with_role(cluster, role.unwrap_or(CtlRole::Leader)).into_iter().next(),
    }
}

/// libpq settings for `member` (`Member.conn_kwargs` updated with the command-line parameters).
pub fn pg_config(member: &Member, p: &ConnectParams) -> Result<tokio_postgres::Config, String> {
    let url = url::Url::parse(&member.data.conn_url)
        .map_err(|e| format!("member {}: invalid conn_url {:?}: {e}", member.name, member.data.conn_url))?;
    let mut c = tokio_postgres::Config::new();
    let (host, port) =
        super::list::conn_kwargs(member).ok_or_else(|| format!("member {} has no conn_url", member.name))?;
    c.host(host.as_str().unwrap_or("localhost"));
    c.port(
        port.as_u64()
            .and_then(|p| u16::try_from(p).ok())
            .or_else(|| port.as_str()?.parse().ok())
            .unwrap_or(5432),
    );
    let url_db = url.path().trim_start_matches('/');
    let dbname = p
        .dbname
        .clone()
        .or_else(|| std::env::var("PGDATABASE").ok())
        .unwrap_or_else(|| if url_db.is_empty() { "postgres".into() } else { url_db.to_string() });
    c.dbname(&dbname);
    let user = p
        .user
        .clone()
        .or_else(|| (!url.username().is_empty()).then(|| url.username().to_string()))
        .or_else(|| std::env::var("PGUSER").ok())
        .or_else(|| nix::unistd::User::from_uid(nix::unistd::getuid()).ok().flatten().map(|u| u.name))
        .unwrap_or_else(|| "postgres".into());
    c.user(&user);
    if let Some(pw) = p
        .password
        .clone()
        .or_else(|| url.password().map(str::to_string))
        .or_else(|| std::env::var("PGPASSWORD").ok())
    {
        c.password(pw);
    }
    c.application_name("Patroni ctl");
    c.connect_timeout(Duration::from_secs(5));
    Ok(c)
}

/// Run `sql` on the chosen member: column names (if any) and rows, or patronictl's one-row error
/// (`[timestamp, message]`).
pub async fn query_member(
    cluster: &Cluster,
    role: Option<CtlRole>,
    member: Option<&str>,
    sql: &str,
    params: &ConnectParams,
) -> (Option<Vec<String>>, Vec<Vec<Value>>) {
    let err_row = |msg: String| (None, vec![vec![Value::String(timestamp(0)), Value::String(msg)]]);
    let Some(m) = pick_member(cluster, role, member) else {
        let msg = match (member, role) {
            (Some(name), _) => format!("No connection to member {name} is available"),
            (None, Some(r)) => format!("No connection to role {} is available", super::actions::role_repr(r)),
            (None, None) => "No connection is available".to_string(),
        };
        return err_row(msg);
    };
    let cfg = match pg_config(m, params) {
        Ok(c) => c,
        Err(e) => return err_row(format!("ERROR, SQLSTATE: {e}")),
    };
    let client = match cfg.connect(tokio_postgres::NoTls).await {
        Ok((client, conn)) => {
            tokio::spawn(async move {
                let _ = conn.await;
            });
            client
        }
        Err(e) => return err_row(format!("ERROR, SQLSTATE: {}", sqlstate_or_text(&e))),
    };
    // `-r replica`/`primary` double-check the server's own view, as patronictl does
    if matches!(role, Some(CtlRole::Replica | CtlRole::Standby | CtlRole::StandbyLeader | CtlRole::Primary)) {
        let in_recovery = client
            .simple_query("SELECT pg_catalog.pg_is_in_recovery()")
            .await
            .ok()
            .and_then(|msgs| {
                msgs.into_iter().find_map(|msg| match msg {
                    tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(|v| v == "t"),
                    _ => None,
                })
            })
            .unwrap_or(true);
        if in_recovery == (role == Some(CtlRole::Primary)) {
            return err_row(format!(
                "No connection to role {} is available",
                super::actions::role_repr(role.unwrap_or(CtlRole::Any))
            ));
        }
    }
    match client.simple_query(sql).await {
        Ok(msgs) => {
            let mut columns = None;
            let mut rows = Vec::new();
            for msg in msgs {
                match msg {
                    tokio_postgres::SimpleQueryMessage::RowDescription(cols) => {
                        columns = Some(cols.iter().map(|c| c.name().to_string()).collect());
                    }
                    tokio_postgres::SimpleQueryMessage::Row(r) => {
                        if columns.is_none() {
                            columns = Some(r.columns().iter().map(|c| c.name().to_string()).collect());
                        }
                        rows.push(
                            (0..r.len())
                                .map(|i| r.get(i).map(|s| Value::String(s.into())).unwrap_or(Value::Null))
                                .collect(),
                        );
                    }
                    _ => {}
                }
            }
            (columns, rows)
        }
        Err(e) => err_row(format!("ERROR, SQLSTATE: {}", sqlstate_or_text(&e))),
    }
}

fn sqlstate_or_text(e: &tokio_postgres::Error) -> String {
    match e.code() {
        Some(c) => c.code().to_string(),
        None => super::error_chain(e).replace('\n', " "),
    }
}

/// `print_output(header, rows, fmt=fmt, delimiter=delimiter)` for query results.
pub fn render(columns: Option<Vec<String>>, rows: Vec<Vec<Value>>, fmt: Format, delimiter: &str) -> String {
    let py = |v: &Value| match v {
        Value::Null => "None".to_string(),
        other => super::pyjson::py_str(other),
    };
    match fmt {
        Format::Tsv => {
            let mut out = String::new();
            if let Some(c) = &columns {
                out.push_str(&c.join(delimiter));
                out.push('\n');
            }
            for r in &rows {
                out.push_str(&r.iter().map(py).collect::<Vec<_>>().join(delimiter));
                out.push('\n');
            }
            out
        }
        _ => {
            let width = rows.first().map(Vec::len).unwrap_or(0);
            let cols = columns.unwrap_or_else(|| (1..=width).map(|i| format!("Field {i}")).collect());
            let rows = if fmt.is_table() {
                rows.into_iter().map(|r| r.iter().map(|v| Value::String(py(v))).collect()).collect()
            } else {
                rows
            };
            print_output(&cols, rows, &[], fmt, "")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tsv_uses_the_delimiter_and_prints_null_as_none() {
        let out =
            render(Some(vec!["a".into(), "b".into()]), vec![vec![json!("1"), Value::Null]], Format::Tsv, ";");
        assert_eq!(out, "a;b\n1;None\n");
        let out = render(None, vec![vec![json!("ts"), json!("ERROR, SQLSTATE: 42P01")]], Format::Tsv, "\t");
        assert_eq!(out, "ts\tERROR, SQLSTATE: 42P01\n");
    }
}
