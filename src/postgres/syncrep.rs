//! What the synchronous-replication state machine reads from the primary: the running
//! `synchronous_standby_names`, `synchronous_commit`, the flush LSN and the walsenders; plus the
//! small write that lets standbys reach a recorded LSN.

use super::{PgError, Result};
use crate::types::Lsn;
use tokio_postgres::Client;

/// One walsender of `pg_stat_replication`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WalsenderRow {
    /// pid.
    pub pid: i32,
    /// `application_name`.
    pub application_name: String,
    /// `state`.
    pub state: String,
    /// `sync_state`.
    pub sync_state: String,
    /// `write_lsn`.
    pub write_lsn: Option<Lsn>,
    /// `flush_lsn`.
    pub flush_lsn: Option<Lsn>,
    /// `replay_lsn`.
    pub replay_lsn: Option<Lsn>,
}

/// The primary's synchronous-replication facts, read in one round trip set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyncFacts {
    /// `pg_is_in_recovery()`.
    pub in_recovery: bool,
    /// `SHOW synchronous_standby_names` (what the server runs with now).
    pub synchronous_standby_names: String,
    /// `SHOW synchronous_commit`.
    pub synchronous_commit: String,
    /// `pg_current_wal_flush_lsn()` (0 in recovery).
    pub flush_lsn: u64,
    /// `server_version_num`.
    pub server_version: u32,
    /// Walsenders.
    pub walsenders: Vec<WalsenderRow>,
}

fn lsn(s: Option<String>) -> Option<Lsn> {
    s.and_then(|v| v.parse().ok())
}

/// Read [`SyncFacts`].
pub async fn facts(client: &Client) -> Result<SyncFacts> {
    let sql = PgError::sql("read synchronous replication state");
    let r = client
        .query_one(
            "SELECT pg_catalog.pg_is_in_recovery(), \
             pg_catalog.current_setting('synchronous_standby_names'), \
             pg_catalog.current_setting('synchronous_commit'), \
             CASE WHEN pg_catalog.pg_is_in_recovery() THEN NULL \
                  ELSE pg_catalog.pg_current_wal_flush_lsn()::text END, \
             pg_catalog.current_setting('server_version_num')::int",
            &[],
        )
        .await
        .map_err(sql)?;
    let in_recovery: bool = r.get(0);
    let rows = client
        .query(
            "SELECT pid, application_name, state, sync_state, write_lsn::text, flush_lsn::text, \
             replay_lsn::text FROM pg_catalog.pg_stat_replication ORDER BY application_name",
            &[],
        )
        .await
        .map_err(PgError::sql("read pg_stat_replication"))?;
    let walsenders = rows
        .into_iter()
        .map(|row| WalsenderRow {
            pid: row.get(0),
            application_name: row.get::<_, Option<String>>(1).unwrap_or_default(),
            state: row.get::<_, Option<String>>(2).unwrap_or_default(),
            sync_state: row.get::<_, Option<String>>(3).unwrap_or_default(),
            write_lsn: lsn(row.get(4)),
            flush_lsn: lsn(row.get(5)),
            replay_lsn: lsn(row.get(6)),
        })
        .collect();
    Ok(SyncFacts {
        in_recovery,
        synchronous_standby_names: r.get(1),
        synchronous_commit: r.get(2),
        flush_lsn: lsn(r.get(3)).map(|l| l.0).unwrap_or(0),
        server_version: r.get::<_, i32>(4).max(0) as u32,
        walsenders,
    })
}

/// Write a little WAL without waiting for synchronous standbys, so that standbys newly listed in
/// `synchronous_standby_names` can reach the LSN recorded at the change.
pub async fn nudge_wal(client: &Client) -> Result<()> {
    client
        .batch_execute(
            "DO $$ BEGIN SET LOCAL synchronous_commit = 'off'; \
             PERFORM pg_catalog.txid_current(); END $$",
        )
        .await
        .map_err(PgError::sql("generate WAL for synchronous standbys"))
}

/// `SHOW synchronous_standby_names`.
pub async fn show_ssn(client: &Client) -> Result<String> {
    let r = client
        .query_one("SELECT pg_catalog.current_setting('synchronous_standby_names')", &[])
        .await
        .map_err(PgError::sql("show synchronous_standby_names"))?;
    Ok(r.get(0))
}
