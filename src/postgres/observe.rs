//! Read-only observation of the local server over tokio-postgres, bounded by a timeout, plus the
//! parsed `pg_controldata` output. A stuck PostgreSQL (e.g. SIGSTOPped) yields
//! [`SqlState::Timeout`], never a blocked caller.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio_postgres::{Client, NoTls};

use crate::types::Lsn;

use super::postmaster::PidFile;

/// What the controller saw at one moment.
#[derive(Clone, Debug, PartialEq)]
pub struct PgObservation {
    /// Process state from `postmaster.pid`.
    pub process: ProcessState,
    /// What SQL said; `NotRunning` when no postmaster runs.
    pub sql: SqlState,
}

impl PgObservation {
    /// SQL facts, when the query succeeded.
    pub fn facts(&self) -> Option<&SqlFacts> {
        match &self.sql {
            SqlState::Ok(f) => Some(f),
            _ => None,
        }
    }

    /// `true` when the server answered and is not in recovery.
    pub fn is_primary(&self) -> bool {
        self.facts().is_some_and(|f| !f.in_recovery)
    }
}

/// Process state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProcessState {
    /// No `postmaster.pid`.
    Stopped,
    /// A live postmaster of this data directory.
    Running(PidFile),
    /// `postmaster.pid` exists but its process is gone.
    Crashed(PidFile),
}

/// Outcome of the SQL part of an observation.
#[derive(Clone, Debug, PartialEq)]
pub enum SqlState {
    /// Not attempted: the postmaster does not run.
    NotRunning,
    /// The server did not answer within the observation timeout (stuck, starting, overloaded).
    Timeout,
    /// The connection or query failed (e.g. still starting up, authentication).
    Error(String),
    /// The answer.
    Ok(Box<SqlFacts>),
}

/// Facts read over SQL.
#[derive(Clone, Debug, PartialEq)]
pub struct SqlFacts {
    /// `pg_is_in_recovery()`.
    pub in_recovery: bool,
    /// Timeline: from the current WAL file on a primary, `received_tli` (or the checkpoint
    /// timeline) on a replica.
    pub timeline: Option<u32>,
    /// `server_version_num`.
    pub server_version: u32,
    /// `pg_postmaster_start_time()`.
    pub postmaster_start_time: DateTime<Utc>,
    /// System identifier (`pg_control_system()`).
    pub system_identifier: String,
    /// Primary: `pg_current_wal_lsn()`.
    pub write_lsn: Option<Lsn>,
    /// Primary: `pg_current_wal_flush_lsn()`.
    pub flush_lsn: Option<Lsn>,
    /// Replica: `pg_last_wal_receive_lsn()`.
    pub receive_lsn: Option<Lsn>,
    /// Replica: `pg_last_wal_replay_lsn()`.
    pub replay_lsn: Option<Lsn>,
    /// Replica: `pg_last_xact_replay_timestamp()`.
    pub replay_timestamp: Option<DateTime<Utc>>,
    /// Replica: `pg_is_wal_replay_paused()`.
    pub replay_paused: bool,
    /// `pg_stat_replication` rows.
    pub replication: Vec<ReplicationRow>,
    /// `pg_stat_wal_receiver`, when a receiver runs.
    pub wal_receiver: Option<WalReceiver>,
    /// Settings waiting for a restart (`pg_settings.pending_restart`).
    pub pending_restart: Vec<String>,
}

/// One `pg_stat_replication` row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicationRow {
    /// Walsender PID.
    pub pid: i32,
    /// `usename`.
    pub usename: Option<String>,
    /// `application_name` (the member name).
    pub application_name: String,
    /// `client_addr`.
    pub client_addr: Option<String>,
    /// `state` (`streaming`, `catchup`, ...).
    pub state: Option<String>,
    /// `sync_state`.
    pub sync_state: Option<String>,
    /// `sync_priority`.
    pub sync_priority: Option<i32>,
    /// `sent_lsn`.
    pub sent_lsn: Option<Lsn>,
    /// `write_lsn`.
    pub write_lsn: Option<Lsn>,
    /// `flush_lsn`.
    pub flush_lsn: Option<Lsn>,
    /// `replay_lsn`.
    pub replay_lsn: Option<Lsn>,
}

/// `pg_stat_wal_receiver`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WalReceiver {
    /// `status`.
    pub status: String,
    /// `received_tli`.
    pub received_tli: Option<u32>,
    /// `flushed_lsn`.
    pub flushed_lsn: Option<Lsn>,
    /// `sender_host`.
    pub sender_host: Option<String>,
    /// `sender_port`.
    pub sender_port: Option<i32>,
    /// `slot_name`.
    pub slot_name: Option<String>,
}

/// How to reach the local server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalConn {
    /// Host name, IP or unix socket directory.
    pub host: String,
    /// Port.
    pub port: u16,
    /// User.
    pub user: String,
    /// Password.
    pub password: Option<String>,
    /// Database.
    pub dbname: String,
}

impl LocalConn {
    /// tokio-postgres configuration with `connect_timeout`.
    pub fn config(&self, timeout: Duration) -> tokio_postgres::Config {
        let mut c = tokio_postgres::Config::new();
        c.host(&self.host)
            .port(self.port)
            .user(&self.user)
            .dbname(&self.dbname)
            .application_name("praetor")
            .connect_timeout(timeout);
        if let Some(p) = &self.password {
            c.password(p);
        }
        c
    }
}

/// Connect; the connection task is spawned. Errors are strings (they are reported, not matched).
pub async fn connect(conn: &LocalConn, timeout: Duration) -> Result<Client, String> {
    let cfg = conn.config(timeout);
    let (client, connection) = match tokio::time::timeout(timeout, cfg.connect(NoTls)).await {
        Ok(Ok(x)) => x,
        Ok(Err(e)) => return Err(format!("connect to {}:{}: {e}", conn.host, conn.port)),
        Err(_) => return Err(format!("connect to {}:{}: timed out", conn.host, conn.port)),
    };
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

fn lsn(s: Option<String>) -> Option<Lsn> {
    s.and_then(|s| s.parse().ok())
}

const FACTS_SQL: &str = "SELECT pg_catalog.pg_is_in_recovery(), \
    pg_catalog.current_setting('server_version_num')::int, \
    pg_catalog.pg_postmaster_start_time(), \
    (SELECT system_identifier::text FROM pg_catalog.pg_control_system()), \
    CASE WHEN pg_catalog.pg_is_in_recovery() THEN NULL ELSE pg_catalog.pg_current_wal_lsn()::text END, \
    CASE WHEN pg_catalog.pg_is_in_recovery() THEN NULL ELSE pg_catalog.pg_current_wal_flush_lsn()::text END, \
    pg_catalog.pg_last_wal_receive_lsn()::text, \
    pg_catalog.pg_last_wal_replay_lsn()::text, \
    pg_catalog.pg_last_xact_replay_timestamp(), \
    CASE WHEN pg_catalog.pg_is_in_recovery() THEN pg_catalog.pg_is_wal_replay_paused() ELSE false END, \
    CASE WHEN pg_catalog.pg_is_in_recovery() THEN NULL ELSE \
      ('x' || pg_catalog.substr(pg_catalog.pg_walfile_name(pg_catalog.pg_current_wal_lsn()), 1, 8))::bit(32)::int END, \
    (SELECT timeline_id FROM pg_catalog.pg_control_checkpoint())";

const REPLICATION_SQL: &str = "SELECT pid, usename::text, application_name, client_addr::text, state, \
    sync_state, sync_priority, sent_lsn::text, write_lsn::text, flush_lsn::text, replay_lsn::text \
    FROM pg_catalog.pg_stat_replication ORDER BY application_name";

const RECEIVER_SQL: &str = "SELECT status, received_tli, flushed_lsn::text, sender_host, sender_port, slot_name \
    FROM pg_catalog.pg_stat_wal_receiver";

const PENDING_SQL: &str = "SELECT name FROM pg_catalog.pg_settings WHERE pending_restart ORDER BY name";

/// Query all facts on an open connection.
pub async fn query_facts(client: &Client) -> Result<SqlFacts, tokio_postgres::Error> {
    let r = client.query_one(FACTS_SQL, &[]).await?;
    let in_recovery: bool = r.try_get(0)?;
    let replication = client
        .query(REPLICATION_SQL, &[])
        .await?
        .into_iter()
        .map(|row| {
            Ok(ReplicationRow {
                pid: row.try_get(0)?,
                usename: row.try_get(1)?,
                application_name: row.try_get::<_, Option<String>>(2)?.unwrap_or_default(),
                client_addr: row.try_get(3)?,
                state: row.try_get(4)?,
                sync_state: row.try_get(5)?,
                sync_priority: row.try_get(6)?,
                sent_lsn: lsn(row.try_get(7)?),
                write_lsn: lsn(row.try_get(8)?),
                flush_lsn: lsn(row.try_get(9)?),
                replay_lsn: lsn(row.try_get(10)?),
            })
        })
        .collect::<Result<Vec<_>, tokio_postgres::Error>>()?;
    let wal_receiver = match client.query_opt(RECEIVER_SQL, &[]).await? {
        Some(row) => Some(WalReceiver {
            status: row.try_get::<_, Option<String>>(0)?.unwrap_or_default(),
            received_tli: row.try_get::<_, Option<i32>>(1)?.map(|t| t as u32),
            flushed_lsn: lsn(row.try_get(2)?),
            sender_host: row.try_get(3)?,
            sender_port: row.try_get(4)?,
            slot_name: row.try_get(5)?,
        }),
        None => None,
    };
    let pending_restart = client
        .query(PENDING_SQL, &[])
        .await?
        .into_iter()
        .map(|row| row.try_get(0))
        .collect::<Result<Vec<String>, _>>()?;
    let primary_tli: Option<i32> = r.try_get(10)?;
    let checkpoint_tli: Option<i32> = r.try_get(11)?;
    let timeline = if in_recovery {
        wal_receiver.as_ref().and_then(|w| w.received_tli).or(checkpoint_tli.map(|t| t as u32))
    } else {
        primary_tli.map(|t| t as u32)
    };
    Ok(SqlFacts {
        in_recovery,
        timeline,
        server_version: r.try_get::<_, i32>(1)? as u32,
        postmaster_start_time: r.try_get(2)?,
        system_identifier: r.try_get::<_, Option<String>>(3)?.unwrap_or_default(),
        write_lsn: lsn(r.try_get(4)?),
        flush_lsn: lsn(r.try_get(5)?),
        receive_lsn: lsn(r.try_get(6)?),
        replay_lsn: lsn(r.try_get(7)?),
        replay_timestamp: r.try_get(8)?,
        replay_paused: r.try_get::<_, Option<bool>>(9)?.unwrap_or(false),
        replication,
        wal_receiver,
        pending_restart,
    })
}

/// Parsed `pg_controldata` output.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ControlData {
    /// Every `key: value` line.
    pub fields: BTreeMap<String, String>,
}

impl ControlData {
    /// Parse `key:   value` lines.
    pub fn parse(out: &str) -> ControlData {
        let fields = out
            .lines()
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
            .collect();
        ControlData { fields }
    }

    /// A raw field.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.fields.get(key).map(String::as_str)
    }

    /// `Database system identifier`.
    pub fn system_identifier(&self) -> Option<&str> {
        self.get("Database system identifier")
    }

    /// `Database cluster state` (`in production`, `shut down`, `shut down in recovery`, ...).
    pub fn cluster_state(&self) -> Option<&str> {
        self.get("Database cluster state")
    }

    /// `Latest checkpoint location`.
    pub fn checkpoint_lsn(&self) -> Option<Lsn> {
        self.get("Latest checkpoint location").and_then(|v| v.parse().ok())
    }

    /// `Latest checkpoint's TimeLineID`.
    pub fn checkpoint_timeline(&self) -> Option<u32> {
        self.get("Latest checkpoint's TimeLineID").and_then(|v| v.parse().ok())
    }

    /// `Minimum recovery ending location`.
    pub fn min_recovery_lsn(&self) -> Option<Lsn> {
        self.get("Minimum recovery ending location").and_then(|v| v.parse().ok())
    }

    /// `Min recovery ending loc's timeline`.
    pub fn min_recovery_timeline(&self) -> Option<u32> {
        self.get("Min recovery ending loc's timeline").and_then(|v| v.parse().ok())
    }

    /// `true` when the last shutdown was clean (`shut down` or `shut down in recovery`).
    pub fn clean_shutdown(&self) -> bool {
        matches!(self.cluster_state(), Some("shut down" | "shut down in recovery"))
    }

    /// pg_rewind can work on this data directory (`wal_log_hints` on or data checksums).
    pub fn allows_rewind(&self) -> bool {
        self.get("wal_log_hints setting") == Some("on")
            || self.get("Data page checksum version").is_some_and(|v| v != "0")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controldata_fields_are_parsed() {
        let out = "pg_control version number:            1300\n\
                   Database system identifier:           7301234567890123456\n\
                   Database cluster state:               shut down in recovery\n\
                   Latest checkpoint location:           0/3000060\n\
                   Latest checkpoint's TimeLineID:       2\n\
                   Minimum recovery ending location:     0/3000110\n\
                   Min recovery ending loc's timeline:   2\n\
                   wal_log_hints setting:                on\n\
                   Data page checksum version:           0\n";
        let c = ControlData::parse(out);
        assert_eq!(c.system_identifier(), Some("7301234567890123456"));
        assert!(c.clean_shutdown());
        assert_eq!(c.checkpoint_lsn(), Some(Lsn(0x3000060)));
        assert_eq!(c.checkpoint_timeline(), Some(2));
        assert_eq!(c.min_recovery_lsn(), Some(Lsn(0x3000110)));
        assert!(c.allows_rewind());
    }
}
