//! Rewind (`P:postgresql/rewind.py`, PATRONI-COMPAT §6.10): decide whether the local data
//! directory diverged from the new primary, run `pg_rewind`, crash recovery in single-user mode
//! first when the data directory was not shut down cleanly, optional removal on failure.
//!
//! Where Patroni asks the primary `IDENTIFY_SYSTEM` and `TIMELINE_HISTORY` over a replication
//! connection, we read the same facts over a normal SQL connection with the rewind credentials:
//! the timeline from the name of the current WAL file and the history file with
//! `pg_read_binary_file('pg_wal/<TLI>.history')`, one of the functions Patroni grants the rewind
//! role. tokio-postgres cannot open replication connections, and the answer is identical.
//!
//! The decision itself ([`decide`]) is pure.

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{info, instrument, warn};

use crate::types::Lsn;

use super::observe::{self, LocalConn};
use super::process;
use super::replica::CloneSource;
use super::settings::Credentials;
use super::{PgError, Postgres, PostmasterState, Result, StopMode};

/// One line of a `.history` file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HistoryEntry {
    /// The timeline that ended.
    pub parent_timeline: u32,
    /// Where the next timeline forked off.
    pub switchpoint: Lsn,
    /// Free text.
    pub reason: String,
}

/// Parse a timeline history file (`<tli>\t<lsn>\t<reason>` lines; comments and blanks skipped).
pub fn parse_history(text: &str) -> Vec<HistoryEntry> {
    text.lines()
        .filter_map(|l| {
            let l = l.trim();
            if l.is_empty() || l.starts_with('#') {
                return None;
            }
            let mut f = l.splitn(3, char::is_whitespace);
            let tli = f.next()?.trim().parse().ok()?;
            let lsn = f.next()?.trim().parse().ok()?;
            Some(HistoryEntry {
                parent_timeline: tli,
                switchpoint: lsn,
                reason: f.next().unwrap_or("").trim().to_string(),
            })
        })
        .collect()
}

/// What the LSN of a [`LocalPosition`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LocalLsn {
    /// A replica's replay position (running), or the minimum recovery point of a stopped one.
    Replayed(Lsn),
    /// The last checkpoint of a cleanly stopped former primary.
    Checkpoint(Lsn),
    /// Where the valid WAL of a crashed former primary ends (read with pg_waldump, before any crash
    /// recovery ran): every record it wrote ends at or before this point.
    WalEnd(Lsn),
}

/// Where the local data directory stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LocalPosition {
    /// Its timeline.
    pub timeline: u32,
    /// Its position on that timeline.
    pub lsn: LocalLsn,
}

impl LocalPosition {
    /// The LSN, whatever it means.
    pub fn lsn(&self) -> Lsn {
        match self.lsn {
            LocalLsn::Replayed(l) | LocalLsn::Checkpoint(l) | LocalLsn::WalEnd(l) => l,
        }
    }
}

/// Outcome of [`decide`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RewindCheck {
    /// Same history: no rewind.
    NotNeeded,
    /// Diverged: rewind (or reinitialize).
    Needed,
    /// A cleanly stopped former primary whose checkpoint is before the switchpoint: rewind unless
    /// the checkpoint record ends exactly at `switchpoint` (read it with pg_waldump).
    CheckpointEnd {
        /// The fork point of the new timeline.
        switchpoint: Lsn,
    },
}

/// Patroni's rule (rewind.py `_check_timeline_and_lsn`): local timeline ahead of the primary ⇒
/// rewind; equal ⇒ none; behind ⇒ find the local timeline in the primary's history: a replica
/// needs rewind when it replayed past the switchpoint, a former primary when its checkpoint is
/// at/after it (or ends elsewhere than the switchpoint, see [`RewindCheck::CheckpointEnd`]); a
/// timeline missing from the history ⇒ rewind.
///
/// praetor adds the crashed former primary ([`LocalLsn::WalEnd`]): like a replica, it needs a
/// rewind only when its WAL goes past the switchpoint. When it does not, every record it has is
/// also on the new leader's timeline, and PostgreSQL started as a standby replays them and then
/// switches timelines at the switchpoint itself: no single-user crash recovery, no pg_rewind.
pub fn decide(local: &LocalPosition, primary_timeline: u32, history: &[HistoryEntry]) -> RewindCheck {
    if local.timeline > primary_timeline {
        return RewindCheck::Needed;
    }
    if local.timeline == primary_timeline {
        return RewindCheck::NotNeeded;
    }
    for h in history {
        if h.parent_timeline == local.timeline {
            return match local.lsn {
                LocalLsn::Replayed(lsn) | LocalLsn::WalEnd(lsn) => {
                    if lsn > h.switchpoint {
                        RewindCheck::Needed
                    } else {
                        RewindCheck::NotNeeded
                    }
                }
                LocalLsn::Checkpoint(lsn) if lsn >= h.switchpoint => RewindCheck::Needed,
                LocalLsn::Checkpoint(_) => RewindCheck::CheckpointEnd { switchpoint: h.switchpoint },
            };
        }
        if h.parent_timeline > local.timeline {
            return RewindCheck::Needed;
        }
    }
    RewindCheck::Needed
}

/// Sizes that place page headers in the WAL (`WAL block size`, `Bytes per WAL segment` of
/// pg_controldata).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WalGeometry {
    /// `XLOG_BLCKSZ`.
    pub block_size: u64,
    /// `wal_segment_size`.
    pub segment_size: u64,
}

impl Default for WalGeometry {
    fn default() -> Self {
        WalGeometry { block_size: 8192, segment_size: 16 * 1024 * 1024 }
    }
}

/// Page header sizes (`SizeOfXLogShortPHD`, `SizeOfXLogLongPHD`, MAXALIGNed on 64-bit builds).
const SHORT_PAGE_HEADER: u64 = 24;
const LONG_PAGE_HEADER: u64 = 40;

/// The end of the valid WAL from pg_waldump's final error when it read to the end
/// (`error in WAL record at <last>: <why> at <next>`): `<next>` is where the next record would
/// have started. When that is just past a page header, the last record ended at the page boundary,
/// which is what a promoted standby records as its switchpoint. `None` for any other message
/// (a missing segment, a bad page): then the caller does not know the end.
pub fn parse_waldump_wal_end(stderr_lines: &[String], geometry: WalGeometry) -> Option<Lsn> {
    const PREFIX: &str = "error in WAL record at ";
    // Messages of xlogreader.c's record-header checks; each ends with "at <next record>".
    const WHY: &[&str] = &[
        "invalid record length at ",
        "invalid resource manager ID ",
        "record with incorrect prev-link ",
        "incorrect resource manager data checksum in record at ",
    ];
    let line = stderr_lines.iter().rev().find(|l| l.contains(PREFIX))?;
    let rest = &line[line.find(PREFIX)? + PREFIX.len()..];
    let why = &rest[rest.find(": ")? + 2..];
    if !WHY.iter().any(|w| why.starts_with(w)) {
        return None;
    }
    let at = why.find(" at ").map(|i| &why[i + 4..])?;
    let token = at.split(|c: char| c == ':' || c.is_whitespace()).next()?;
    let next: Lsn = token.parse().ok()?;
    let n = next.0;
    let (block, seg) = (geometry.block_size.max(1), geometry.segment_size.max(1));
    let end = if n % seg == LONG_PAGE_HEADER {
        n - LONG_PAGE_HEADER
    } else if n % block == SHORT_PAGE_HEADER && n % seg >= block {
        n - SHORT_PAGE_HEADER
    } else {
        n
    };
    Some(Lsn(end))
}

/// Parse the end of the checkpoint record out of pg_waldump's error for the second record
/// (`error in WAL record at <lsn>: invalid record length at <END>: wanted 24, got 0`).
pub fn parse_waldump_checkpoint_end(stderr_lines: &[String], lsn: Lsn) -> Option<Lsn> {
    let pattern = format!("error in WAL record at {lsn}: invalid record length at ");
    stderr_lines.iter().find_map(|line| {
        let i = line.find(&pattern)? + pattern.len();
        let rest = &line[i..];
        let end = [": expected at least ", ": wanted "]
            .iter()
            .filter_map(|p| rest.find(p))
            .min()
            .unwrap_or(rest.len());
        rest[..end].trim().parse().ok()
    })
}

/// What [`Postgres::rewind`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RewindOutcome {
    /// pg_rewind succeeded; start as a replica of the source.
    Rewound,
    /// The source is not ready: still in recovery, or no checkpoint since its promotion (so its
    /// pg_control does not show the new timeline yet). Nothing was changed; try again later.
    WaitingForCheckpoint(String),
    /// Rewind failed or was impossible and the settings allowed removing the data directory
    /// (it is now empty: reinitialize).
    DataDirectoryRemoved,
    /// Rewind failed or was impossible; the data directory is untouched.
    Failed(String),
}

/// Files pg_rewind overwrites with the source's copy; kept and put back.
const CONFIG_FILES: &[&str] = &["postgresql.conf", "postgresql.base.conf", "pg_hba.conf", "pg_ident.conf"];

impl Postgres {
    fn remote_conn(&self, src: &CloneSource, creds: &Credentials) -> LocalConn {
        LocalConn {
            host: src.host.clone(),
            port: src.port,
            user: creds.username.clone(),
            password: creds.password.as_ref().map(|p| p.expose().clone()),
            dbname: src.dbname.clone().unwrap_or_else(|| "postgres".into()),
        }
    }

    /// Local timeline and position: from SQL when running (replica replay position), else from
    /// pg_controldata, or for a crashed former primary from the end of its WAL
    /// ([`Self::crashed_wal_end`]). `None` when it cannot be told (then run
    /// [`Self::ensure_clean_shutdown`] first).
    pub async fn local_position(&self) -> Result<Option<LocalPosition>> {
        if self.is_running() {
            let obs = self.observe().await;
            return Ok(obs.facts().and_then(|f| {
                Some(LocalPosition {
                    timeline: f.timeline?,
                    // A running primary is judged as before by its position, like a checkpoint.
                    lsn: if f.in_recovery {
                        LocalLsn::Replayed(f.replay_lsn?)
                    } else {
                        LocalLsn::Checkpoint(f.write_lsn?)
                    },
                })
            }));
        }
        let cd = self.controldata().await?;
        let mut state = cd.cluster_state().unwrap_or("").to_string();
        if matches!(state.as_str(), "shut down in recovery" | "in archive recovery") {
            match (cd.min_recovery_lsn(), cd.min_recovery_timeline()) {
                (Some(lsn), Some(tl)) if lsn != Lsn(0) && tl != 0 => {
                    return Ok(Some(LocalPosition { timeline: tl, lsn: LocalLsn::Replayed(lsn) }));
                }
                _ => state = "shut down".into(),
            }
        }
        if state == "shut down" {
            return Ok(match (cd.checkpoint_lsn(), cd.checkpoint_timeline()) {
                (Some(lsn), Some(tl)) => Some(LocalPosition { timeline: tl, lsn: LocalLsn::Checkpoint(lsn) }),
                _ => None,
            });
        }
        if matches!(state.as_str(), "in production" | "in crash recovery" | "shutting down") {
            return self.crashed_wal_end(&cd).await;
        }
        Ok(None)
    }

    /// Timeline and end of the valid WAL of a crashed former primary, read with pg_waldump from
    /// its last checkpoint on, without running crash recovery. Crash recovery stops at the same
    /// record: both read the WAL with PostgreSQL's own reader and stop at the first invalid
    /// record. `None` when it cannot be told for sure: a `backup_label` (recovery would start
    /// elsewhere), a local history file of a later timeline (it was promoted after that
    /// checkpoint, so the WAL goes on under another timeline), or a pg_waldump ending that does
    /// not name the next record's position.
    pub async fn crashed_wal_end(&self, cd: &super::observe::ControlData) -> Result<Option<LocalPosition>> {
        let (Some(start), Some(tl)) = (cd.checkpoint_lsn(), cd.checkpoint_timeline()) else {
            return Ok(None);
        };
        if self.data_dir().join("backup_label").exists() {
            return Ok(None);
        }
        let wal = self.data_dir().join("pg_wal");
        let later_timeline = std::fs::read_dir(&wal)
            .map_err(PgError::io("list", &wal))?
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().to_string();
                u32::from_str_radix(name.strip_suffix(".history")?, 16).ok()
            })
            .any(|t| t > tl);
        if later_timeline {
            info!(timeline = tl, "a later timeline's history file is present: end of WAL not used");
            return Ok(None);
        }
        let out = process::run_unchecked(
            self.tool("pg_waldump")
                .args(["-q", "-t", &tl.to_string(), "-s", &start.to_string(), "-p"])
                .arg(&wal)
                .env("LANG", "C")
                .env("LC_ALL", "C")
                .timeout(Duration::from_secs(600)),
            &CancellationToken::new(),
        )
        .await?;
        let geometry = WalGeometry {
            block_size: cd.get("WAL block size").and_then(|v| v.parse().ok()).unwrap_or(8192),
            segment_size: cd.get("Bytes per WAL segment").and_then(|v| v.parse().ok()).unwrap_or(16 << 20),
        };
        let Some(end) = parse_waldump_wal_end(&out.stderr_tail, geometry) else {
            warn!(stderr = ?out.stderr_tail, "could not tell the end of the local WAL from pg_waldump");
            return Ok(None);
        };
        Ok(Some(LocalPosition { timeline: tl, lsn: LocalLsn::WalEnd(end) }))
    }

    /// Timeline and history of the primary at `src`, read with the rewind credentials.
    /// `Ok(None)` when `src` is in recovery (not usable for rewind).
    pub async fn primary_timeline_history(
        &self,
        src: &CloneSource,
    ) -> Result<Option<(u32, Vec<HistoryEntry>)>> {
        let conn = self.remote_conn(src, self.settings().rewind_credentials());
        let c = observe::connect(&conn, Duration::from_secs(3))
            .await
            .map_err(|msg| PgError::Sql { op: "connect to primary", msg })?;
        let row = c
            .query_one(
                "SELECT pg_catalog.pg_is_in_recovery(), CASE WHEN pg_catalog.pg_is_in_recovery() THEN 0 ELSE \
                 ('x' || pg_catalog.substr(pg_catalog.pg_walfile_name(pg_catalog.pg_current_wal_lsn()), 1, 8))::bit(32)::int END",
                &[],
            )
            .await
            .map_err(PgError::sql("read primary timeline"))?;
        let in_recovery: bool = row.try_get(0).map_err(PgError::sql("read primary timeline"))?;
        if in_recovery {
            info!("Leader is still in_recovery and therefore can't be used for rewind");
            return Ok(None);
        }
        let tl: i32 = row.try_get(1).map_err(PgError::sql("read primary timeline"))?;
        let tl = tl as u32;
        let mut history = Vec::new();
        if tl > 1 {
            let file = format!("pg_wal/{tl:08X}.history");
            let row = c
                .query_one("SELECT pg_catalog.pg_read_binary_file($1)", &[&file])
                .await
                .map_err(PgError::sql("read primary timeline history"))?;
            let bytes: Vec<u8> = row.try_get(0).map_err(PgError::sql("read primary timeline history"))?;
            history = parse_history(&String::from_utf8_lossy(&bytes));
        }
        Ok(Some((tl, history)))
    }

    /// End of the checkpoint record at `lsn` on `timeline`, read with pg_waldump.
    pub async fn checkpoint_end(&self, timeline: u32, lsn: Lsn) -> Result<Option<Lsn>> {
        let out = process::run_unchecked(
            self.tool("pg_waldump")
                .args(["-t", &timeline.to_string(), "-s", &lsn.to_string(), "-n", "2", "-p"])
                .arg(self.data_dir().join("pg_wal"))
                .env("LANG", "C")
                .env("LC_ALL", "C")
                .capture_stdout(),
            &CancellationToken::new(),
        )
        .await?;
        let end = parse_waldump_checkpoint_end(&out.stderr_tail, lsn);
        if end.is_none() {
            warn!(stdout = %out.stdout, stderr = ?out.stderr_tail, "failed to parse pg_waldump output");
        }
        Ok(end)
    }

    /// Does the local data directory need pg_rewind to follow the primary at `src`?
    /// `Ok(None)` when it cannot be decided now (primary in recovery, local position unknown).
    #[instrument(skip_all, fields(source = %src.host))]
    pub async fn rewind_needed(&self, src: &CloneSource) -> Result<Option<bool>> {
        let Some(local) = self.local_position().await? else {
            return Ok(None);
        };
        info!(timeline = local.timeline, lsn = %local.lsn(), kind = ?local.lsn, "local position");
        let Some((tl, history)) = self.primary_timeline_history(src).await? else {
            return Ok(None);
        };
        info!(primary_timeline = tl, "primary timeline");
        Ok(Some(match decide(&local, tl, &history) {
            RewindCheck::NotNeeded => false,
            RewindCheck::Needed => true,
            RewindCheck::CheckpointEnd { switchpoint } => {
                self.checkpoint_end(local.timeline, local.lsn()).await? != Some(switchpoint)
            }
        }))
    }

    /// When the data directory was not shut down cleanly (and has no `backup_label`), run crash
    /// recovery in single-user mode so that pg_rewind and pg_controldata see a consistent state.
    /// Returns `true` when recovery was run.
    pub async fn ensure_clean_shutdown(&self, cancel: &CancellationToken) -> Result<bool> {
        if self.is_running() {
            return Ok(false);
        }
        let cd = self.controldata().await?;
        if cd.clean_shutdown() || self.data_dir().join("backup_label").exists() {
            return Ok(false);
        }
        info!(state = ?cd.cluster_state(), "running crash recovery in single-user mode");
        for f in ["standby.signal", "recovery.signal"] {
            let p = self.data_dir().join(f);
            if p.exists() {
                std::fs::remove_file(&p).map_err(PgError::io("remove", &p))?;
            }
        }
        let mut opts = read_postmaster_opts(self.data_dir());
        opts.retain(|(k, _)| k != "archive_mode" && k != "archive_command");
        opts.push(("archive_mode".into(), "on".into()));
        opts.push(("archive_command".into(), "false".into()));
        opts.sort();
        let mut spec = self.tool("postgres").arg("--single").arg("-D").arg(self.data_dir());
        for (k, v) in opts {
            spec = spec.arg("-c").arg(format!("{k}={v}"));
        }
        spec = spec.arg("template1").timeout(Duration::from_secs(3600));
        spec.stdin = Some(Vec::new());
        process::run(spec, cancel).await?;
        Ok(true)
    }

    /// Rewind the local data directory from the primary at `src`: stop the local server (fast),
    /// crash recovery if needed, make sure the primary checkpointed after promotion, run
    /// pg_rewind with the rewind user, keep the local configuration files. On failure, or when
    /// rewind is impossible (`use_pg_rewind` off, no `wal_log_hints`/checksums), the data directory
    /// is removed only when `remove_data_directory_on_rewind_failure` /
    /// `remove_data_directory_on_diverged_timelines` allow it.
    #[instrument(skip_all, fields(source = %src.host))]
    pub async fn rewind(&self, src: &CloneSource, cancel: &CancellationToken) -> Result<RewindOutcome> {
        let s = self.settings();
        if let PostmasterState::Running(_) = self.postmaster_state()? {
            self.stop(StopMode::Fast).await?;
        }
        self.ensure_clean_shutdown(cancel).await?;
        let cd = self.controldata().await?;
        if !s.use_pg_rewind || !cd.allows_rewind() {
            let why = if s.use_pg_rewind {
                "neither wal_log_hints nor data checksums are on"
            } else {
                "use_pg_rewind is off"
            };
            return self.after_failure(
                format!("cannot rewind: {why}"),
                s.remove_data_directory_on_diverged_timelines,
            );
        }
        let creds = s.rewind_credentials().clone();
        let conn = self.remote_conn(src, &creds);
        let c = observe::connect(&conn, Duration::from_secs(3))
            .await
            .map_err(|msg| PgError::Sql { op: "connect to primary", msg })?;
        // Rewind only from a real primary (rewind.py: check_leader_is_not_in_recovery).
        let in_recovery: bool = c
            .query_one("SELECT pg_catalog.pg_is_in_recovery()", &[])
            .await
            .and_then(|r| r.try_get(0))
            .map_err(PgError::sql("check that the source is a primary"))?;
        if in_recovery {
            return Ok(RewindOutcome::WaitingForCheckpoint(
                "the source is still in recovery and can't be used for rewind".into(),
            ));
        }
        if creds == s.superuser {
            c.batch_execute("CHECKPOINT").await.map_err(PgError::sql("checkpoint on primary"))?;
        } else {
            let row = c
                .query_one(
                    "SELECT NOT pg_catalog.pg_is_in_recovery() AND ('x' || pg_catalog.substr(pg_catalog.pg_walfile_name(\
                     pg_catalog.pg_current_wal_lsn()), 1, 8))::bit(32)::int = timeline_id \
                     FROM pg_catalog.pg_control_checkpoint()",
                    &[],
                )
                .await
                .map_err(PgError::sql("check primary checkpoint"))?;
            let done: Option<bool> = row.try_get(0).map_err(PgError::sql("check primary checkpoint"))?;
            if done != Some(true) {
                return Ok(RewindOutcome::WaitingForCheckpoint("leader has not run a checkpoint yet".into()));
            }
        }
        drop(c);

        let dir = s.config_dir().to_path_buf();
        let saved: Vec<(std::path::PathBuf, Vec<u8>)> = CONFIG_FILES
            .iter()
            .filter_map(|f| {
                let p = dir.join(f);
                std::fs::read(&p).ok().map(|b| (p, b))
            })
            .collect();
        self.write_pgpass()?;
        let dsn = format!(
            "host={} port={} user={} dbname={}",
            super::conf::quote_conninfo_value(&conn.host),
            conn.port,
            super::conf::quote_conninfo_value(&conn.user),
            super::conf::quote_conninfo_value(&conn.dbname)
        );
        let mut spec = self.tool("pg_rewind").arg("-D").arg(self.data_dir());
        let major = self.major_version().await?;
        if major >= 15
            && s.parameter("restore_command")
                .or_else(|| s.recovery_conf.get("restore_command").and_then(super::conf::value_to_string))
                .is_some()
        {
            spec = spec
                .arg("--restore-target-wal")
                .arg(format!("--config-file={}", dir.join("postgresql.conf").display()));
        }
        if major >= 12 && !fsync_off(s.parameter("fsync")) {
            // Skip pg_rewind's own sync of the whole data directory (seconds on a busy disk): the
            // start that follows syncs it anyway. pg_rewind leaves pg_control in state
            // DB_IN_ARCHIVE_RECOVERY (pg_rewind.c: `ControlFile_new.state = DB_IN_ARCHIVE_RECOVERY`),
            // and StartupXLOG (xlog.c, PostgreSQL 15) calls SyncDataDirectory() whenever the state is
            // neither DB_SHUTDOWNED nor DB_SHUTDOWNED_IN_RECOVERY, before it replays anything, no
            // matter who starts the server next. An OS crash before that start leaves the directory
            // unusable, as one during pg_rewind's own final sync does (pg_control is written before
            // that sync): the window moves by the few milliseconds until our start, it does not
            // open. With fsync=off the server does not sync at start, so pg_rewind keeps its sync.
            spec = spec.arg("--no-sync");
        }
        spec = spec
            .arg(format!("--source-server={dsn}"))
            .env("PGPASSFILE", s.pgpass.display().to_string())
            .env("LANG", "C")
            .env("LC_ALL", "C")
            .env("PGOPTIONS", "-c statement_timeout=0")
            .timeout(Duration::from_secs(24 * 3600));
        info!(%dsn, "running pg_rewind");
        let res = process::run(spec, cancel).await;
        for (p, b) in saved {
            if let Err(e) =
                super::conf::write_if_changed(&p, &String::from_utf8_lossy(&b), 0o600, self.run_as())
            {
                warn!(path = %p.display(), "failed to restore configuration file: {e}");
            }
        }
        match res {
            Ok(_) => {
                info!("pg_rewind finished");
                Ok(RewindOutcome::Rewound)
            }
            Err(e) => self.after_failure(
                format!("pg_rewind failed: {e}"),
                s.remove_data_directory_on_rewind_failure || s.remove_data_directory_on_diverged_timelines,
            ),
        }
    }

    fn after_failure(&self, why: String, remove: bool) -> Result<RewindOutcome> {
        if remove {
            warn!("{why}; removing the data directory as configured");
            self.remove_data_directory()?;
            Ok(RewindOutcome::DataDirectoryRemoved)
        } else {
            warn!("{why}");
            Ok(RewindOutcome::Failed(why))
        }
    }
}

/// `fsync` is set to a false value (PostgreSQL's `parse_bool` spellings, prefixes included).
fn fsync_off(v: Option<String>) -> bool {
    v.is_some_and(|t| {
        let t = t.trim().to_ascii_lowercase();
        t == "0"
            || (t.len() >= 2 && "off".starts_with(&t))
            || (!t.is_empty() && ("false".starts_with(&t) || "no".starts_with(&t)))
    })
}

/// `--name=value` options of the last postmaster start (`postmaster.opts`).
fn read_postmaster_opts(data_dir: &std::path::Path) -> Vec<(String, String)> {
    let Ok(text) = std::fs::read_to_string(data_dir.join("postmaster.opts")) else {
        return Vec::new();
    };
    text.split("\" \"")
        .filter_map(|o| {
            let o = o.trim().trim_matches('"');
            let o = o.strip_prefix("--")?;
            let (k, v) = o.split_once('=')?;
            Some((k.replace('-', "_"), v.trim_end_matches(['"', '\n']).to_string()))
        })
        .filter(|(k, _)| k != "config_file")
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(tl: u32, lsn: u64) -> HistoryEntry {
        HistoryEntry { parent_timeline: tl, switchpoint: Lsn(lsn), reason: String::new() }
    }

    #[test]
    fn pg_rewind_keeps_its_own_sync_only_when_fsync_is_off() {
        for off in ["off", "OFF", "of", "false", "f", "no", "n", "0"] {
            assert!(fsync_off(Some(off.into())), "{off}");
        }
        for on in ["on", "true", "yes", "1", "o", ""] {
            assert!(!fsync_off(Some(on.into())), "{on}");
        }
        assert!(!fsync_off(None));
    }

    #[test]
    fn history_file_is_parsed() {
        let text = "1\t0/3000000\tno recovery target specified\n\n2\t0/5000A28\tat restore point \"x\"\n";
        assert_eq!(
            parse_history(text),
            vec![
                HistoryEntry {
                    parent_timeline: 1,
                    switchpoint: Lsn(0x3000000),
                    reason: "no recovery target specified".into()
                },
                HistoryEntry {
                    parent_timeline: 2,
                    switchpoint: Lsn(0x5000A28),
                    reason: "at restore point \"x\"".into()
                },
            ]
        );
    }

    /// rewind.py `_check_timeline_and_lsn`, plus praetor's crashed former primary judged by the
    /// end of its WAL. One row per case: local timeline, local position, primary timeline, result.
    #[test]
    fn rewind_is_needed_only_when_local_wal_goes_past_the_fork() {
        use LocalLsn::{Checkpoint, Replayed, WalEnd};
        let hist = [h(1, 0x300_0000), h(2, 0x500_0000)];
        let cases: &[(&str, u32, LocalLsn, u32, RewindCheck)] = &[
            ("local timeline ahead of the primary", 4, Replayed(Lsn(0)), 3, RewindCheck::Needed),
            ("same timeline", 3, Checkpoint(Lsn(0x900_0000)), 3, RewindCheck::NotNeeded),
            ("replica not past the fork", 1, Replayed(Lsn(0x300_0000)), 3, RewindCheck::NotNeeded),
            ("replica past the fork", 1, Replayed(Lsn(0x300_0001)), 3, RewindCheck::Needed),
            ("replica on an intermediate timeline", 2, Replayed(Lsn(0x400_0000)), 3, RewindCheck::NotNeeded),
            (
                "clean former primary, checkpoint at the fork",
                2,
                Checkpoint(Lsn(0x500_0000)),
                3,
                RewindCheck::Needed,
            ),
            (
                "clean former primary, checkpoint before the fork",
                2,
                Checkpoint(Lsn(0x4FF_FF00)),
                3,
                RewindCheck::CheckpointEnd { switchpoint: Lsn(0x500_0000) },
            ),
            (
                "crashed former primary, WAL ends at the fork",
                2,
                WalEnd(Lsn(0x500_0000)),
                3,
                RewindCheck::NotNeeded,
            ),
            (
                "crashed former primary, WAL ends before the fork",
                2,
                WalEnd(Lsn(0x4FF_0000)),
                3,
                RewindCheck::NotNeeded,
            ),
            ("crashed former primary, WAL past the fork", 2, WalEnd(Lsn(0x500_0018)), 3, RewindCheck::Needed),
            (
                "crashed former primary two timelines back",
                1,
                WalEnd(Lsn(0x300_0000)),
                3,
                RewindCheck::NotNeeded,
            ),
            ("crashed former primary ahead", 3, WalEnd(Lsn(0x100)), 2, RewindCheck::Needed),
            ("timeline the primary never had", 7, Replayed(Lsn(0)), 9, RewindCheck::Needed),
        ];
        for (what, tl, lsn, primary_tl, want) in cases {
            let local = LocalPosition { timeline: *tl, lsn: *lsn };
            assert_eq!(decide(&local, *primary_tl, &hist), *want, "{what}");
        }
    }

    /// The end of the WAL of a crashed primary from pg_waldump's last error (PostgreSQL 15 and 16
    /// wording), with page-header positions mapped back to the page boundary.
    #[test]
    fn waldump_end_of_wal_is_parsed_from_its_final_error() {
        let g = WalGeometry::default();
        let line = |m: &str| vec![format!("pg_waldump: error: error in WAL record at 0/1527978: {m}")];
        let cases: &[(&str, Option<u64>)] = &[
            ("invalid record length at 0/1527B10: wanted 24, got 0", Some(0x1527B10)),
            ("invalid record length at 0/1527B10: expected at least 24, got 0", Some(0x1527B10)),
            ("invalid resource manager ID 77 at 0/1527B10", Some(0x1527B10)),
            ("record with incorrect prev-link 0/1200000 at 0/1527B10", Some(0x1527B10)),
            ("incorrect resource manager data checksum in record at 0/1527B10", Some(0x1527B10)),
            // Just past the short header of a page: the last record ended at the boundary.
            ("invalid record length at 0/1528018: wanted 24, got 0", Some(0x1528000)),
            // Just past the long header at the start of a segment.
            ("invalid record length at 0/2000028: wanted 24, got 0", Some(0x2000000)),
            // Other endings do not name the next record.
            ("unexpected pageaddr 0/1000000 in log segment 000000010000000000000002, offset 0", None),
            ("invalid magic number 0000 in log segment 000000010000000000000002, offset 8192", None),
        ];
        for (msg, want) in cases {
            assert_eq!(parse_waldump_wal_end(&line(msg), g), want.map(Lsn), "{msg}");
        }
        let missing = vec!["pg_waldump: error: could not find file \"000000010000000000000002\"".to_string()];
        assert_eq!(parse_waldump_wal_end(&missing, g), None);
        assert_eq!(parse_waldump_wal_end(&[], g), None);
    }

    #[test]
    fn waldump_error_gives_checkpoint_end() {
        let lines = vec![
            "pg_waldump: fatal: error in WAL record at 0/3000028: invalid record length at 0/30000A0: wanted 24, got 0"
                .to_string(),
        ];
        assert_eq!(parse_waldump_checkpoint_end(&lines, Lsn(0x3000028)), Some(Lsn(0x30000A0)));
        let lines16 = vec![
            "pg_waldump: error: error in WAL record at 0/3000028: invalid record length at 0/30000A0: expected at least 24, got 0"
                .to_string(),
        ];
        assert_eq!(parse_waldump_checkpoint_end(&lines16, Lsn(0x3000028)), Some(Lsn(0x30000A0)));
        assert_eq!(parse_waldump_checkpoint_end(&lines16, Lsn(0x1)), None);
    }
}
