//! The dynamic configuration: the value of the DCS `/config` key (and of `bootstrap.dcs`), plus
//! Patroni's rules for merging it with the local configuration.
//!
//! Parsing never fails: a value written by another tool that is malformed, of the wrong type or
//! out of range falls back to Patroni's default and produces a warning (`P:global_config.py`
//! reads every key with a default the same way). Keys praetor does not know are kept, so writing
//! the value back loses nothing a Patroni node put there.

use super::{Problem, ProblemKind};
use serde_json::{Map, Value as JsonValue, json};
use std::collections::BTreeMap;
use std::time::Duration;

/// Name of Patroni's cache of the dynamic configuration inside PGDATA.
pub const CACHE_FILE: &str = "patroni.dynamic.json";
/// Patroni's minimum `ttl`. praetor accepts lower values (down to [`PRAETOR_MIN_TTL`]) with a warning.
pub const PATRONI_MIN_TTL: u64 = 20;
/// The lowest `ttl` praetor accepts; lower values are raised to it.
pub const PRAETOR_MIN_TTL: u64 = 5;
/// Minimum `loop_wait` (`P:config.py _validate_and_adjust_timeouts`).
pub const MIN_LOOP_WAIT: u64 = 1;
/// Minimum `retry_timeout`.
pub const MIN_RETRY_TIMEOUT: u64 = 3;

/// `synchronous_mode`: `off`, `on` (also `true`) or `quorum`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SynchronousMode {
    /// Asynchronous replication.
    #[default]
    Off,
    /// Patroni-managed synchronous replication (`synchronous_mode: true`).
    On,
    /// Quorum commit (`synchronous_mode: quorum`, Patroni 4.0).
    Quorum,
}

impl SynchronousMode {
    /// The value written to `/config`: `false`, `true` or `"quorum"`.
    pub fn to_json(self) -> JsonValue {
        match self {
            SynchronousMode::Off => JsonValue::Bool(false),
            SynchronousMode::On => JsonValue::Bool(true),
            SynchronousMode::Quorum => JsonValue::String("quorum".into()),
        }
    }
}

/// Type of a permanent replication slot.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SlotKind {
    /// Physical slot.
    #[default]
    Physical,
    /// Logical slot (needs `database` and `plugin`).
    Logical,
}

/// One entry of `slots` (permanent replication slots).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PermanentSlot {
    /// Physical or logical.
    pub kind: SlotKind,
    /// Database of a logical slot.
    pub database: Option<String>,
    /// Output plugin of a logical slot.
    pub plugin: Option<String>,
    /// `primary` or `standby`: only create the slot in that kind of cluster (Patroni 4.1).
    pub cluster_type: Option<String>,
}

/// One matcher of `ignore_slots`: a slot matching every given field is left alone.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct IgnoreSlot {
    /// Slot name.
    pub name: Option<String>,
    /// `physical` or `logical`.
    pub kind: Option<String>,
    /// Database.
    pub database: Option<String>,
    /// Plugin.
    pub plugin: Option<String>,
}

/// `standby_cluster`: this cluster replicates from another one.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StandbyCluster {
    /// Host of the source.
    pub host: Option<String>,
    /// Port of the source.
    pub port: Option<String>,
    /// Slot to use on the source.
    pub primary_slot_name: Option<String>,
    /// Replica creation methods for the standby leader.
    pub create_replica_methods: Vec<String>,
    /// `restore_command`.
    pub restore_command: Option<String>,
    /// `archive_cleanup_command`.
    pub archive_cleanup_command: Option<String>,
    /// `recovery_min_apply_delay`.
    pub recovery_min_apply_delay: Option<String>,
}

impl StandbyCluster {
    /// Patroni's `is_standby_cluster`: any of host, port or restore_command is set.
    pub fn is_active(&self) -> bool {
        [&self.host, &self.port, &self.restore_command]
            .iter()
            .any(|v| v.as_deref().is_some_and(|s| !s.is_empty()))
    }
}

/// The `postgresql` part of the dynamic configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct DynamicPostgresql {
    /// Use pg_rewind (default false).
    pub use_pg_rewind: bool,
    /// Create replication slots for members (default true; dynamic-only).
    pub use_slots: bool,
    /// PostgreSQL parameters as given (validated when merged, see [`effective_parameters`]).
    pub parameters: BTreeMap<String, JsonValue>,
    /// pg_hba.conf lines.
    pub pg_hba: Option<Vec<String>>,
    /// pg_ident.conf lines.
    pub pg_ident: Option<Vec<String>>,
    /// Recovery settings.
    pub recovery_conf: Option<Map<String, JsonValue>>,
}

impl Default for DynamicPostgresql {
    fn default() -> Self {
        DynamicPostgresql {
            use_pg_rewind: false,
            use_slots: true,
            parameters: BTreeMap::new(),
            pg_hba: None,
            pg_ident: None,
            recovery_conf: None,
        }
    }
}

/// praetor's own section of the dynamic configuration (`praetor:` in `/config` and
/// `bootstrap.dcs`). Patroni copies only the keys it knows from `/config` into its effective
/// configuration, so a Patroni node in the same cluster ignores this section.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PraetorSettings {
    /// `fence_isolated_primary` (true): a primary whose DCS call fails while no replica confirmed
    /// its WAL for `fence_replica_silence_ms` stops accepting writes at once.
    pub fence_isolated_primary: bool,
    /// `fence_replica_silence_ms` (300, at least [`MIN_FENCE_REPLICA_SILENCE_MS`]).
    pub fence_replica_silence_ms: u64,
    /// `strict_sync_failover` (false, Patroni's behaviour): with `synchronous_mode_strict`, a leader whose synchronous
    /// standby has not confirmed WAL for longer than `ttl` hands its key to that standby when it is
    /// healthy in the DCS.
    pub strict_sync_failover: bool,
}

/// The lowest `praetor.fence_replica_silence_ms`: the sampler looks every 150 ms, so a shorter
/// window would fence on one late sample.
pub const MIN_FENCE_REPLICA_SILENCE_MS: u64 = 200;

impl Default for PraetorSettings {
    fn default() -> Self {
        PraetorSettings {
            fence_isolated_primary: true,
            fence_replica_silence_ms: 300,
            strict_sync_failover: false,
        }
    }
}

/// Keys of `praetor`.
pub const PRAETOR_KEYS: &[&str] =
    &["fence_isolated_primary", "fence_replica_silence_ms", "strict_sync_failover"];

/// The dynamic (cluster-wide) configuration with Patroni's defaults applied.
///
/// # Invariant
/// After parsing, `loop_wait + 2 * retry_timeout <= ttl` and `ttl >= PRAETOR_MIN_TTL`
/// (test `timeouts_are_adjusted_like_patroni`).
#[derive(Clone, Debug, PartialEq)]
pub struct DynamicConfig {
    /// Leader key TTL, seconds (30).
    pub ttl: u64,
    /// HA loop period, seconds (10).
    pub loop_wait: u64,
    /// DCS and PostgreSQL retry budget, seconds (10).
    pub retry_timeout: u64,
    /// Replicas lagging more bytes are not failover candidates (1048576).
    pub maximum_lag_on_failover: i64,
    /// Synchronous standbys lagging more bytes are replaced (-1 = disabled).
    pub maximum_lag_on_syncnode: i64,
    /// Timeline history entries kept in `/history` (0 = unlimited).
    pub max_timelines_history: i64,
    /// Seconds a crashed primary may take to recover before failover (300).
    pub primary_start_timeout: i64,
    /// Seconds to wait for a primary to stop in synchronous mode before SIGKILL (0 = forever).
    pub primary_stop_timeout: i64,
    /// Synchronous replication mode.
    pub synchronous_mode: SynchronousMode,
    /// Refuse writes when no synchronous standby is available.
    pub synchronous_mode_strict: bool,
    /// Number of synchronous standbys (1).
    pub synchronous_node_count: u64,
    /// Keep the primary running when the DCS is down but all members are reachable.
    pub failsafe_mode: bool,
    /// Consider timelines in the leader race.
    pub check_timeline: bool,
    /// Maintenance mode; `None` when the key is absent.
    pub pause: Option<bool>,
    /// Seconds member slots are kept after the member key is gone (1800).
    pub member_slots_ttl: i64,
    /// Permanent replication slots.
    pub slots: BTreeMap<String, PermanentSlot>,
    /// Slots praetor must not touch.
    pub ignore_slots: Vec<IgnoreSlot>,
    /// Standby cluster settings (`None` when absent).
    pub standby_cluster: Option<StandbyCluster>,
    /// PostgreSQL settings.
    pub postgresql: DynamicPostgresql,
    /// praetor's own settings (`praetor:`).
    pub praetor: PraetorSettings,
    /// The object this was parsed from (with adjusted values), including keys praetor ignores.
    raw: Map<String, JsonValue>,
}

impl Default for DynamicConfig {
    fn default() -> Self {
        DynamicConfig {
            ttl: 30,
            loop_wait: 10,
            retry_timeout: 10,
            maximum_lag_on_failover: 1_048_576,
            maximum_lag_on_syncnode: -1,
            max_timelines_history: 0,
            primary_start_timeout: 300,
            primary_stop_timeout: 0,
            synchronous_mode: SynchronousMode::Off,
            synchronous_mode_strict: false,
            synchronous_node_count: 1,
            failsafe_mode: false,
            check_timeline: false,
            pause: None,
            member_slots_ttl: 1800,
            slots: BTreeMap::new(),
            ignore_slots: Vec::new(),
            standby_cluster: None,
            postgresql: DynamicPostgresql::default(),
            praetor: PraetorSettings::default(),
            raw: Map::new(),
        }
    }
}

/// Keys of the dynamic configuration (for unknown-key checks and suggestions).
pub const DYNAMIC_KEYS: &[&str] = &[
    "ttl",
    "loop_wait",
    "retry_timeout",
    "maximum_lag_on_failover",
    "maximum_lag_on_syncnode",
    "max_timelines_history",
    "primary_start_timeout",
    "primary_stop_timeout",
    "master_start_timeout",
    "master_stop_timeout",
    "synchronous_mode",
    "synchronous_mode_strict",
    "synchronous_node_count",
    "failsafe_mode",
    "check_timeline",
    "pause",
    "member_slots_ttl",
    "slots",
    "permanent_slots",
    "permanent_replication_slots",
    "ignore_slots",
    "standby_cluster",
    "postgresql",
    "primary_race_backoff",
    "praetor",
];

/// Keys of `postgresql` in the dynamic configuration.
pub const DYNAMIC_POSTGRESQL_KEYS: &[&str] = &[
    "use_pg_rewind",
    "use_slots",
    "parameters",
    "pg_hba",
    "pg_ident",
    "recovery_conf",
    "parameters_primary",
    "parameters_replica",
    "parameters_standby_leader",
    "pg_hba_primary",
    "pg_hba_replica",
    "pg_hba_standby_leader",
    "pg_ident_primary",
    "pg_ident_replica",
    "pg_ident_standby_leader",
    "pg_ctl_timeout",
    "bin_dir",
];

/// Keys of `standby_cluster`.
pub const STANDBY_CLUSTER_KEYS: &[&str] = &[
    "host",
    "port",
    "primary_slot_name",
    "create_replica_methods",
    "restore_command",
    "archive_cleanup_command",
    "recovery_min_apply_delay",
];

/// Local-only `postgresql` keys that are dropped when found in the dynamic configuration
/// (`P:config.py _safe_copy_dynamic_configuration`).
pub const LOCAL_ONLY_POSTGRESQL_KEYS: &[&str] =
    &["connect_address", "proxy_address", "listen", "config_dir", "data_dir", "pgpass", "authentication"];

/// Parses JSON-ish values the way `P:utils.py` does.
mod jv {
    use serde_json::Value;

    pub fn int(v: &Value, base_unit: Option<&str>) -> Option<i64> {
        match v {
            Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f.round() as i64)),
            Value::String(s) => crate::config::de::parse_int_str(s, base_unit),
            _ => None,
        }
    }

    pub fn bool(v: &Value) -> Option<bool> {
        match v {
            Value::Bool(b) => Some(*b),
            Value::Number(n) => n.as_i64().map(|i| i != 0),
            Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
                "on" | "true" | "yes" | "1" => Some(true),
                "off" | "false" | "no" | "0" => Some(false),
                _ => None,
            },
            _ => None,
        }
    }

    pub fn string(v: &Value) -> Option<String> {
        match v {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            _ => None,
        }
    }

    pub fn string_list(v: &Value) -> Option<Vec<String>> {
        match v {
            Value::Array(items) => items.iter().map(string).collect(),
            Value::String(s) => {
                Some(s.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect())
            }
            Value::Null => Some(Vec::new()),
            _ => None,
        }
    }

    pub fn show(v: &Value) -> String {
        match v {
            Value::Array(_) => "a list".into(),
            Value::Object(_) => "a mapping".into(),
            other => other.to_string(),
        }
    }
}

/// Collects warnings while parsing, with a path prefix (`bootstrap.dcs` or `config`).
struct Ctx<'a> {
    prefix: &'a str,
    report_unknown: bool,
    problems: Vec<Problem>,
}

impl Ctx<'_> {
    fn path(&self, key: &str) -> String {
        if self.prefix.is_empty() { key.to_string() } else { format!("{}.{key}", self.prefix) }
    }

    fn invalid(&mut self, key: &str, v: &JsonValue, expected: &str, default: impl std::fmt::Display) {
        let path = self.path(key);
        self.problems.push(Problem::warning(
            ProblemKind::Invalid,
            path,
            format!("expected {expected}, got {}; using the default {default}", jv::show(v)),
        ));
    }

    fn unknown(&mut self, section: &str, key: &str, known: &[&str]) {
        if self.report_unknown {
            let path =
                self.path(&if section.is_empty() { key.to_string() } else { format!("{section}.{key}") });
            self.problems.push(super::unknown_key_problem(&path, key, known));
        }
    }
}

impl DynamicConfig {
    /// Parse the text of the `/config` key. Unparsable text gives the defaults and a warning.
    pub fn from_json_str(text: &str) -> (DynamicConfig, Vec<Problem>) {
        match serde_json::from_str::<JsonValue>(text) {
            Ok(v) => DynamicConfig::from_json(&v),
            Err(e) => {
                let (cfg, mut problems) = DynamicConfig::from_json(&JsonValue::Object(Map::new()));
                problems.insert(
                    0,
                    Problem::warning(
                        ProblemKind::Invalid,
                        "config",
                        format!("the /config value is not valid JSON ({e}); using the defaults"),
                    ),
                );
                (cfg, problems)
            }
        }
    }

    /// Parse a `/config` value. Never fails; every value that cannot be used is reported and
    /// replaced by its default. Unknown keys are kept silently (another Patroni version may use them).
    pub fn from_json(value: &JsonValue) -> (DynamicConfig, Vec<Problem>) {
        Self::parse(value, "config", false)
    }

    /// Parse `value` reporting problems under `prefix`; with `report_unknown`, unknown keys are
    /// reported too (used for `bootstrap.dcs` in the local file).
    pub(crate) fn parse(
        value: &JsonValue,
        prefix: &str,
        report_unknown: bool,
    ) -> (DynamicConfig, Vec<Problem>) {
        let mut ctx = Ctx { prefix, report_unknown, problems: Vec::new() };
        let mut cfg = DynamicConfig::default();
        let obj = match value {
            JsonValue::Object(m) => m.clone(),
            JsonValue::Null => Map::new(),
            other => {
                ctx.problems.push(Problem::warning(
                    ProblemKind::Invalid,
                    prefix,
                    format!("expected a mapping, got {}; using the defaults", jv::show(other)),
                ));
                Map::new()
            }
        };
        let mut raw = obj.clone();
        for (key, v) in &obj {
            match key.as_str() {
                "ttl" | "loop_wait" | "retry_timeout" => {
                    let default = match key.as_str() {
                        "ttl" => cfg.ttl,
                        "loop_wait" => cfg.loop_wait,
                        _ => cfg.retry_timeout,
                    };
                    let n = match jv::int(v, Some("s")) {
                        Some(n) => n.max(0) as u64,
                        None => {
                            ctx.invalid(key, v, "an integer number of seconds", default);
                            raw.remove(key);
                            default
                        }
                    };
                    match key.as_str() {
                        "ttl" => cfg.ttl = n,
                        "loop_wait" => cfg.loop_wait = n,
                        _ => cfg.retry_timeout = n,
                    }
                }
                "maximum_lag_on_failover" => {
                    int_field(&mut ctx, key, v, None, &mut cfg.maximum_lag_on_failover, &mut raw)
                }
                "maximum_lag_on_syncnode" => {
                    int_field(&mut ctx, key, v, None, &mut cfg.maximum_lag_on_syncnode, &mut raw)
                }
                "max_timelines_history" => {
                    int_field(&mut ctx, key, v, None, &mut cfg.max_timelines_history, &mut raw)
                }
                "member_slots_ttl" => {
                    int_field(&mut ctx, key, v, Some("s"), &mut cfg.member_slots_ttl, &mut raw)
                }
                "primary_start_timeout" => {
                    int_field(&mut ctx, key, v, Some("s"), &mut cfg.primary_start_timeout, &mut raw)
                }
                "primary_stop_timeout" => {
                    int_field(&mut ctx, key, v, Some("s"), &mut cfg.primary_stop_timeout, &mut raw)
                }
                // Legacy names; the primary_ form wins when both are present (P:global_config.py).
                "master_start_timeout" if !obj.contains_key("primary_start_timeout") => {
                    int_field(&mut ctx, key, v, Some("s"), &mut cfg.primary_start_timeout, &mut raw)
                }
                "master_stop_timeout" if !obj.contains_key("primary_stop_timeout") => {
                    int_field(&mut ctx, key, v, Some("s"), &mut cfg.primary_stop_timeout, &mut raw)
                }
                "master_start_timeout" | "master_stop_timeout" => {}
                "synchronous_mode" => {
                    cfg.synchronous_mode = match v {
                        JsonValue::String(s) if s.eq_ignore_ascii_case("quorum") => SynchronousMode::Quorum,
                        other => match jv::bool(other) {
                            Some(true) => SynchronousMode::On,
                            Some(false) => SynchronousMode::Off,
                            None if other.is_null() => SynchronousMode::Off,
                            None => {
                                ctx.invalid(key, other, "off, on or quorum", "off");
                                SynchronousMode::Off
                            }
                        },
                    }
                }
                "synchronous_mode_strict" => bool_field(&mut ctx, key, v, &mut cfg.synchronous_mode_strict),
                "failsafe_mode" => bool_field(&mut ctx, key, v, &mut cfg.failsafe_mode),
                "check_timeline" => bool_field(&mut ctx, key, v, &mut cfg.check_timeline),
                "pause" => {
                    cfg.pause = match jv::bool(v) {
                        Some(b) => Some(b),
                        None if v.is_null() => None,
                        None => {
                            ctx.invalid(key, v, "a boolean", "false");
                            Some(false)
                        }
                    }
                }
                "synchronous_node_count" => {
                    let mut n = cfg.synchronous_node_count as i64;
                    int_field(&mut ctx, key, v, None, &mut n, &mut raw);
                    if n < 1 {
                        ctx.invalid(key, v, "an integer of at least 1", 1);
                        n = 1;
                    }
                    cfg.synchronous_node_count = n as u64;
                }
                "slots" | "permanent_slots" | "permanent_replication_slots" => {
                    // Patroni reads `permanent_replication_slots`, `permanent_slots`, then `slots`;
                    // the first present wins.
                    let first = ["permanent_replication_slots", "permanent_slots", "slots"]
                        .into_iter()
                        .find(|k| obj.contains_key(*k));
                    if first == Some(key.as_str()) {
                        cfg.slots = parse_slots(&mut ctx, key, v);
                    }
                }
                "ignore_slots" => cfg.ignore_slots = parse_ignore_slots(&mut ctx, key, v),
                "standby_cluster" => cfg.standby_cluster = parse_standby(&mut ctx, key, v),
                "postgresql" => cfg.postgresql = parse_postgresql(&mut ctx, key, v),
                "primary_race_backoff" => {}
                "praetor" => cfg.praetor = parse_praetor(&mut ctx, key, v),
                other => ctx.unknown("", other, DYNAMIC_KEYS),
            }
        }
        adjust_timeouts(&mut cfg, &mut ctx);
        for (k, v) in [("ttl", cfg.ttl), ("loop_wait", cfg.loop_wait), ("retry_timeout", cfg.retry_timeout)] {
            if raw.contains_key(k) {
                raw.insert(k.to_string(), json!(v));
            }
        }
        cfg.raw = raw;
        (cfg, ctx.problems)
    }

    /// Read Patroni's cache of the dynamic configuration, `<data_dir>/patroni.dynamic.json`
    /// (it lets a node keep its settings when the DCS was wiped). `None` when the file is absent;
    /// unreadable or malformed content gives the defaults and a warning, like any `/config` value.
    pub fn load_cache(data_dir: &std::path::Path) -> Option<(DynamicConfig, Vec<Problem>)> {
        let path = data_dir.join(CACHE_FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => Some(DynamicConfig::from_json_str(&text)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => {
                let (cfg, mut problems) = DynamicConfig::from_json(&JsonValue::Null);
                problems.push(Problem::warning(
                    ProblemKind::Source,
                    path.display().to_string(),
                    format!("cannot read: {e}"),
                ));
                Some((cfg, problems))
            }
        }
    }

    /// Write `<data_dir>/patroni.dynamic.json` atomically (temporary file, then rename), readable
    /// by the owner only. The owner is the data directory's (PostgreSQL reads every file of it for
    /// `pg_basebackup`), also when the agent runs as root.
    pub fn save_cache(&self, data_dir: &std::path::Path) -> std::io::Result<()> {
        use std::io::Write;
        use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
        let tmp = data_dir.join(format!("{CACHE_FILE}.{}", std::process::id()));
        let owner = std::fs::metadata(data_dir)?;
        let result = (|| {
            let mut f =
                std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
            if f.metadata()?.uid() != owner.uid() {
                std::os::unix::fs::fchown(&f, Some(owner.uid()), Some(owner.gid()))?;
            }
            f.write_all(self.to_json().as_bytes())?;
            f.sync_all()?;
            std::fs::rename(&tmp, data_dir.join(CACHE_FILE))
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result
    }

    /// `ttl` as a duration.
    pub fn ttl_duration(&self) -> Duration {
        Duration::from_secs(self.ttl)
    }

    /// `loop_wait` as a duration.
    pub fn loop_wait_duration(&self) -> Duration {
        Duration::from_secs(self.loop_wait)
    }

    /// `retry_timeout` as a duration.
    pub fn retry_timeout_duration(&self) -> Duration {
        Duration::from_secs(self.retry_timeout)
    }

    /// True when `pause` is set.
    pub fn is_paused(&self) -> bool {
        self.pause == Some(true)
    }

    /// True when this cluster is a standby cluster.
    pub fn is_standby_cluster(&self) -> bool {
        self.standby_cluster.as_ref().is_some_and(StandbyCluster::is_active)
    }

    /// Synchronous replication requested and not a standby cluster (`P:global_config.py`).
    pub fn is_synchronous_mode(&self) -> bool {
        self.synchronous_mode != SynchronousMode::Off && !self.is_standby_cluster()
    }

    /// The value as a JSON object: the keys it was parsed from (with adjusted values), plus every
    /// field that differs from Patroni's default.
    pub fn to_value(&self) -> JsonValue {
        let d = DynamicConfig::default();
        let mut out = self.raw.clone();
        let put = |out: &mut Map<String, JsonValue>, key: &str, v: JsonValue, differs: bool| {
            if differs || out.contains_key(key) {
                out.insert(key.to_string(), v);
            }
        };
        put(&mut out, "ttl", json!(self.ttl), self.ttl != d.ttl);
        put(&mut out, "loop_wait", json!(self.loop_wait), self.loop_wait != d.loop_wait);
        put(&mut out, "retry_timeout", json!(self.retry_timeout), self.retry_timeout != d.retry_timeout);
        put(
            &mut out,
            "maximum_lag_on_failover",
            json!(self.maximum_lag_on_failover),
            self.maximum_lag_on_failover != d.maximum_lag_on_failover,
        );
        put(
            &mut out,
            "maximum_lag_on_syncnode",
            json!(self.maximum_lag_on_syncnode),
            self.maximum_lag_on_syncnode != d.maximum_lag_on_syncnode,
        );
        put(
            &mut out,
            "max_timelines_history",
            json!(self.max_timelines_history),
            self.max_timelines_history != d.max_timelines_history,
        );
        let start_key =
            if out.contains_key("master_start_timeout") && !out.contains_key("primary_start_timeout") {
                "master_start_timeout"
            } else {
                "primary_start_timeout"
            };
        put(
            &mut out,
            start_key,
            json!(self.primary_start_timeout),
            self.primary_start_timeout != d.primary_start_timeout,
        );
        let stop_key = if out.contains_key("master_stop_timeout") && !out.contains_key("primary_stop_timeout")
        {
            "master_stop_timeout"
        } else {
            "primary_stop_timeout"
        };
        put(
            &mut out,
            stop_key,
            json!(self.primary_stop_timeout),
            self.primary_stop_timeout != d.primary_stop_timeout,
        );
        put(
            &mut out,
            "synchronous_mode",
            self.synchronous_mode.to_json(),
            self.synchronous_mode != d.synchronous_mode,
        );
        put(
            &mut out,
            "synchronous_mode_strict",
            json!(self.synchronous_mode_strict),
            self.synchronous_mode_strict != d.synchronous_mode_strict,
        );
        put(
            &mut out,
            "synchronous_node_count",
            json!(self.synchronous_node_count),
            self.synchronous_node_count != d.synchronous_node_count,
        );
        put(&mut out, "failsafe_mode", json!(self.failsafe_mode), self.failsafe_mode != d.failsafe_mode);
        put(&mut out, "check_timeline", json!(self.check_timeline), self.check_timeline != d.check_timeline);
        put(
            &mut out,
            "member_slots_ttl",
            json!(self.member_slots_ttl),
            self.member_slots_ttl != d.member_slots_ttl,
        );
        match self.pause {
            Some(p) => {
                out.insert("pause".into(), json!(p));
            }
            None => {
                out.remove("pause");
            }
        }
        let slots_key = ["permanent_replication_slots", "permanent_slots"]
            .into_iter()
            .find(|k| out.contains_key(*k))
            .unwrap_or("slots");
        let slots: Map<String, JsonValue> =
            self.slots.iter().map(|(name, s)| (name.clone(), slot_to_json(s))).collect();
        put(&mut out, slots_key, JsonValue::Object(slots), !self.slots.is_empty());
        let ignore: Vec<JsonValue> = self.ignore_slots.iter().map(ignore_slot_to_json).collect();
        put(&mut out, "ignore_slots", JsonValue::Array(ignore), !self.ignore_slots.is_empty());
        match &self.standby_cluster {
            Some(sc) => {
                let mut m = match out.get("standby_cluster") {
                    Some(JsonValue::Object(m)) => m.clone(),
                    _ => Map::new(),
                };
                for (k, v) in [
                    ("host", &sc.host),
                    ("port", &sc.port),
                    ("primary_slot_name", &sc.primary_slot_name),
                    ("restore_command", &sc.restore_command),
                    ("archive_cleanup_command", &sc.archive_cleanup_command),
                    ("recovery_min_apply_delay", &sc.recovery_min_apply_delay),
                ] {
                    match v {
                        Some(s) => {
                            let keep_number = k == "port" && m.get(k).is_some_and(JsonValue::is_number);
                            let value = if keep_number {
                                s.parse::<i64>().map(|n| json!(n)).unwrap_or_else(|_| json!(s))
                            } else {
                                json!(s)
                            };
                            m.insert(k.into(), value);
                        }
                        None => {
                            m.remove(k);
                        }
                    }
                }
                if sc.create_replica_methods.is_empty() {
                    m.remove("create_replica_methods");
                } else {
                    m.insert("create_replica_methods".into(), json!(sc.create_replica_methods));
                }
                out.insert("standby_cluster".into(), JsonValue::Object(m));
            }
            None => {
                out.remove("standby_cluster");
            }
        }
        let dp = &self.postgresql;
        let mut pg = match out.get("postgresql") {
            Some(JsonValue::Object(m)) => m.clone(),
            _ => Map::new(),
        };
        put(
            &mut pg,
            "use_pg_rewind",
            json!(dp.use_pg_rewind),
            dp.use_pg_rewind != d.postgresql.use_pg_rewind,
        );
        put(&mut pg, "use_slots", json!(dp.use_slots), dp.use_slots != d.postgresql.use_slots);
        let params: Map<String, JsonValue> =
            dp.parameters.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        put(&mut pg, "parameters", JsonValue::Object(params), !dp.parameters.is_empty());
        for (k, v) in [("pg_hba", &dp.pg_hba), ("pg_ident", &dp.pg_ident)] {
            match v {
                Some(lines) => {
                    pg.insert(k.into(), json!(lines));
                }
                None => {
                    pg.remove(k);
                }
            }
        }
        match &dp.recovery_conf {
            Some(rc) => {
                pg.insert("recovery_conf".into(), JsonValue::Object(rc.clone()));
            }
            None => {
                pg.remove("recovery_conf");
            }
        }
        if !pg.is_empty() {
            out.insert("postgresql".into(), JsonValue::Object(pg));
        }
        JsonValue::Object(out)
    }

    /// Compact JSON as Patroni writes it to `/config` (`separators=(',', ':')`).
    pub fn to_json(&self) -> String {
        self.to_value().to_string()
    }
}

fn int_field(
    ctx: &mut Ctx<'_>,
    key: &str,
    v: &JsonValue,
    base: Option<&str>,
    out: &mut i64,
    raw: &mut Map<String, JsonValue>,
) {
    match jv::int(v, base) {
        Some(n) => *out = n,
        None => {
            ctx.invalid(key, v, "an integer", *out);
            raw.remove(key);
        }
    }
}

fn bool_field(ctx: &mut Ctx<'_>, key: &str, v: &JsonValue, out: &mut bool) {
    match jv::bool(v) {
        Some(b) => *out = b,
        None if v.is_null() => {}
        None => ctx.invalid(key, v, "a boolean", *out),
    }
}

fn opt_str(ctx: &mut Ctx<'_>, path: &str, v: Option<&JsonValue>) -> Option<String> {
    match v {
        None | Some(JsonValue::Null) => None,
        Some(v) => match jv::string(v) {
            Some(s) => Some(s),
            None => {
                ctx.invalid(path, v, "a string", "(unset)");
                None
            }
        },
    }
}

fn parse_slots(ctx: &mut Ctx<'_>, key: &str, v: &JsonValue) -> BTreeMap<String, PermanentSlot> {
    let mut out = BTreeMap::new();
    let m = match v {
        JsonValue::Object(m) => m,
        JsonValue::Null => return out,
        other => {
            ctx.invalid(key, other, "a mapping of slot name to slot settings", "no slots");
            return out;
        }
    };
    for (name, sv) in m {
        let path = format!("{key}.{name}");
        let mut slot = PermanentSlot::default();
        match sv {
            JsonValue::Null => {}
            JsonValue::Object(sm) => {
                for (k, val) in sm {
                    match k.as_str() {
                        "type" => match jv::string(val).as_deref() {
                            Some("physical") => slot.kind = SlotKind::Physical,
                            Some("logical") => slot.kind = SlotKind::Logical,
                            _ => ctx.invalid(&format!("{path}.type"), val, "physical or logical", "physical"),
                        },
                        "database" => slot.database = opt_str(ctx, &format!("{path}.database"), Some(val)),
                        "plugin" => slot.plugin = opt_str(ctx, &format!("{path}.plugin"), Some(val)),
                        "cluster_type" => {
                            slot.cluster_type = opt_str(ctx, &format!("{path}.cluster_type"), Some(val))
                        }
                        other => ctx.unknown(&path, other, &["type", "database", "plugin", "cluster_type"]),
                    }
                }
                if !sm.contains_key("type") && slot.database.is_some() && slot.plugin.is_some() {
                    slot.kind = SlotKind::Logical;
                }
                if slot.kind == SlotKind::Logical && (slot.database.is_none() || slot.plugin.is_none()) {
                    ctx.problems.push(Problem::warning(
                        ProblemKind::Invalid,
                        ctx.path(&path),
                        "a logical slot needs both `database` and `plugin`; the slot is ignored",
                    ));
                    continue;
                }
            }
            other => {
                ctx.invalid(&path, other, "a mapping with type/database/plugin", "ignored");
                continue;
            }
        }
        out.insert(name.clone(), slot);
    }
    out
}

fn slot_to_json(s: &PermanentSlot) -> JsonValue {
    let mut m = Map::new();
    m.insert("type".into(), json!(if s.kind == SlotKind::Logical { "logical" } else { "physical" }));
    for (k, v) in [("database", &s.database), ("plugin", &s.plugin), ("cluster_type", &s.cluster_type)] {
        if let Some(v) = v {
            m.insert(k.into(), json!(v));
        }
    }
    JsonValue::Object(m)
}

fn parse_ignore_slots(ctx: &mut Ctx<'_>, key: &str, v: &JsonValue) -> Vec<IgnoreSlot> {
    let items = match v {
        JsonValue::Array(a) => a,
        JsonValue::Null => return Vec::new(),
        other => {
            ctx.invalid(key, other, "a list of slot matchers", "none");
            return Vec::new();
        }
    };
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let path = format!("{key}[{i}]");
        let JsonValue::Object(m) = item else {
            ctx.invalid(&path, item, "a mapping with name/type/database/plugin", "ignored");
            continue;
        };
        let mut s = IgnoreSlot::default();
        for (k, val) in m {
            match k.as_str() {
                "name" => s.name = opt_str(ctx, &format!("{path}.name"), Some(val)),
                "type" => s.kind = opt_str(ctx, &format!("{path}.type"), Some(val)),
                "database" => s.database = opt_str(ctx, &format!("{path}.database"), Some(val)),
                "plugin" => s.plugin = opt_str(ctx, &format!("{path}.plugin"), Some(val)),
                other => ctx.unknown(&path, other, &["name", "type", "database", "plugin"]),
            }
        }
        out.push(s);
    }
    out
}

fn ignore_slot_to_json(s: &IgnoreSlot) -> JsonValue {
    let mut m = Map::new();
    for (k, v) in [("name", &s.name), ("type", &s.kind), ("database", &s.database), ("plugin", &s.plugin)] {
        if let Some(v) = v {
            m.insert(k.into(), json!(v));
        }
    }
    JsonValue::Object(m)
}

fn parse_praetor(ctx: &mut Ctx<'_>, key: &str, v: &JsonValue) -> PraetorSettings {
    let mut out = PraetorSettings::default();
    let m = match v {
        JsonValue::Object(m) => m,
        JsonValue::Null => return out,
        other => {
            ctx.invalid(key, other, "a mapping", "the defaults");
            return out;
        }
    };
    for (k, val) in m {
        let p = format!("{key}.{k}");
        match k.as_str() {
            "fence_isolated_primary" => bool_field(ctx, &p, val, &mut out.fence_isolated_primary),
            "strict_sync_failover" => bool_field(ctx, &p, val, &mut out.strict_sync_failover),
            "fence_replica_silence_ms" => match jv::int(val, Some("ms")) {
                Some(n) if n >= MIN_FENCE_REPLICA_SILENCE_MS as i64 => {
                    out.fence_replica_silence_ms = n as u64
                }
                _ => ctx.invalid(
                    &p,
                    val,
                    &format!("an integer number of milliseconds of at least {MIN_FENCE_REPLICA_SILENCE_MS}"),
                    out.fence_replica_silence_ms,
                ),
            },
            other => ctx.unknown(key, other, PRAETOR_KEYS),
        }
    }
    out
}

fn parse_standby(ctx: &mut Ctx<'_>, key: &str, v: &JsonValue) -> Option<StandbyCluster> {
    let m = match v {
        JsonValue::Object(m) => m,
        JsonValue::Null => return None,
        other => {
            ctx.invalid(key, other, "a mapping", "no standby cluster");
            return None;
        }
    };
    let mut sc = StandbyCluster::default();
    for (k, val) in m {
        let p = format!("{key}.{k}");
        match k.as_str() {
            "host" => sc.host = opt_str(ctx, &p, Some(val)),
            "port" => sc.port = opt_str(ctx, &p, Some(val)),
            "primary_slot_name" => sc.primary_slot_name = opt_str(ctx, &p, Some(val)),
            "restore_command" => sc.restore_command = opt_str(ctx, &p, Some(val)),
            "archive_cleanup_command" => sc.archive_cleanup_command = opt_str(ctx, &p, Some(val)),
            "recovery_min_apply_delay" => sc.recovery_min_apply_delay = opt_str(ctx, &p, Some(val)),
            "create_replica_methods" => match jv::string_list(val) {
                Some(l) => sc.create_replica_methods = l,
                None => ctx.invalid(&p, val, "a list of method names", "none"),
            },
            other => ctx.unknown(key, other, STANDBY_CLUSTER_KEYS),
        }
    }
    // Patroni's default section has every key set to '': treat empty strings as unset.
    for f in [
        &mut sc.host,
        &mut sc.port,
        &mut sc.primary_slot_name,
        &mut sc.restore_command,
        &mut sc.archive_cleanup_command,
        &mut sc.recovery_min_apply_delay,
    ] {
        if f.as_deref() == Some("") {
            *f = None;
        }
    }
    Some(sc)
}

fn parse_postgresql(ctx: &mut Ctx<'_>, key: &str, v: &JsonValue) -> DynamicPostgresql {
    let mut pg = DynamicPostgresql::default();
    let m = match v {
        JsonValue::Object(m) => m,
        JsonValue::Null => return pg,
        other => {
            ctx.invalid(key, other, "a mapping", "defaults");
            return pg;
        }
    };
    for (k, val) in m {
        let p = format!("{key}.{k}");
        match k.as_str() {
            "use_pg_rewind" => bool_field(ctx, &p, val, &mut pg.use_pg_rewind),
            "use_slots" => bool_field(ctx, &p, val, &mut pg.use_slots),
            "parameters" => match val {
                JsonValue::Object(params) => {
                    pg.parameters = params.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
                }
                JsonValue::Null => {}
                other => ctx.invalid(&p, other, "a mapping of parameter names to values", "no parameters"),
            },
            "pg_hba" | "pg_ident" => {
                let lines = match val {
                    JsonValue::Array(_) => jv::string_list(val),
                    JsonValue::Null => None,
                    _ => None,
                };
                if lines.is_none() && !val.is_null() {
                    ctx.invalid(&p, val, "a list of lines", "unset");
                }
                if k == "pg_hba" {
                    pg.pg_hba = lines;
                } else {
                    pg.pg_ident = lines;
                }
            }
            "recovery_conf" => match val {
                JsonValue::Object(rc) => pg.recovery_conf = Some(rc.clone()),
                JsonValue::Null => {}
                other => ctx.invalid(&p, other, "a mapping", "unset"),
            },
            local if LOCAL_ONLY_POSTGRESQL_KEYS.contains(&local) => {
                if ctx.report_unknown {
                    ctx.problems.push(Problem::warning(
                        ProblemKind::Misplaced,
                        ctx.path(&p),
                        format!("`{local}` is a local setting and is ignored in the dynamic configuration; it belongs in `postgresql.{local}`"),
                    ));
                }
            }
            known if DYNAMIC_POSTGRESQL_KEYS.contains(&known) => {}
            other => ctx.unknown(key, other, DYNAMIC_POSTGRESQL_KEYS),
        }
    }
    pg
}

/// Patroni's `_validate_and_adjust_timeouts` with praetor's lower `ttl` floor.
fn adjust_timeouts(cfg: &mut DynamicConfig, ctx: &mut Ctx<'_>) {
    let adjust = |ctx: &mut Ctx<'_>, key: &str, value: &mut u64, min: u64| {
        if *value < min {
            let path = ctx.path(key);
            ctx.problems.push(Problem::warning(
                ProblemKind::Adjusted,
                path,
                format!("{key}={value} can't be smaller than {min}, adjusting to {min}"),
            ));
            *value = min;
        }
    };
    adjust(ctx, "loop_wait", &mut cfg.loop_wait, MIN_LOOP_WAIT);
    adjust(ctx, "retry_timeout", &mut cfg.retry_timeout, MIN_RETRY_TIMEOUT);
    adjust(ctx, "ttl", &mut cfg.ttl, PRAETOR_MIN_TTL);
    if cfg.ttl < PATRONI_MIN_TTL {
        let path = ctx.path("ttl");
        ctx.problems.push(Problem::warning(
            ProblemKind::Adjusted,
            path,
            format!(
                "ttl={} is below Patroni's minimum of {PATRONI_MIN_TTL}: praetor uses it, but a short ttl makes false failovers \
                 likely when the DCS or the network stalls briefly, and Patroni nodes in the same cluster would use {PATRONI_MIN_TTL}",
                cfg.ttl
            ),
        ));
    }
    let (ttl, loop_wait, retry) = (cfg.ttl, cfg.loop_wait, cfg.retry_timeout);
    if MIN_LOOP_WAIT + 2 * retry > ttl {
        cfg.loop_wait = MIN_LOOP_WAIT;
        cfg.retry_timeout = (ttl - MIN_LOOP_WAIT) / 2;
        let path = ctx.path("retry_timeout");
        ctx.problems.push(Problem::warning(
            ProblemKind::Adjusted,
            path,
            format!(
                "violated the rule \"loop_wait + 2*retry_timeout <= ttl\", where ttl={ttl}: adjusting loop_wait from {loop_wait} to {} and retry_timeout from {retry} to {}",
                cfg.loop_wait, cfg.retry_timeout
            ),
        ));
    } else if loop_wait + 2 * retry > ttl {
        cfg.loop_wait = ttl - 2 * retry;
        let path = ctx.path("loop_wait");
        ctx.problems.push(Problem::warning(
            ProblemKind::Adjusted,
            path,
            format!(
                "violated the rule \"loop_wait + 2*retry_timeout <= ttl\", where ttl={ttl} and retry_timeout={retry}: adjusting loop_wait from {loop_wait} to {}",
                cfg.loop_wait
            ),
        ));
    }
}

/// A parameter that PostgreSQL must get on the command line and that only the dynamic
/// configuration may set: `(name, default, validator)` (`P:postgresql/config.py CMDLINE_OPTIONS`).
pub struct CmdlineOption {
    /// Parameter name.
    pub name: &'static str,
    /// Patroni's default, if any.
    pub default: Option<&'static str>,
    check: fn(&JsonValue) -> bool,
}

fn int_min(v: &JsonValue, min: i64, base: Option<&str>) -> bool {
    jv::int(v, base).is_some_and(|n| n >= min)
}

/// `CMDLINE_OPTIONS` of Patroni 4.1.
pub const CMDLINE_OPTIONS: &[CmdlineOption] = &[
    CmdlineOption { name: "listen_addresses", default: None, check: |_| false },
    CmdlineOption { name: "port", default: None, check: |_| false },
    CmdlineOption { name: "cluster_name", default: None, check: |_| false },
    CmdlineOption {
        name: "wal_level",
        default: Some("hot_standby"),
        check: |v| {
            jv::string(v).is_some_and(|s| {
                ["hot_standby", "replica", "logical"].contains(&s.to_ascii_lowercase().as_str())
            })
        },
    },
    CmdlineOption { name: "hot_standby", default: Some("on"), check: |v| jv::bool(v) == Some(true) },
    CmdlineOption { name: "max_connections", default: Some("100"), check: |v| int_min(v, 25, None) },
    CmdlineOption { name: "max_wal_senders", default: Some("10"), check: |v| int_min(v, 3, None) },
    CmdlineOption { name: "wal_keep_segments", default: None, check: |v| int_min(v, 1, None) },
    CmdlineOption { name: "wal_keep_size", default: None, check: |v| int_min(v, 16, Some("MB")) },
    CmdlineOption { name: "max_prepared_transactions", default: Some("0"), check: |v| int_min(v, 0, None) },
    CmdlineOption { name: "max_locks_per_transaction", default: Some("64"), check: |v| int_min(v, 32, None) },
    CmdlineOption { name: "track_commit_timestamp", default: Some("off"), check: |v| jv::bool(v).is_some() },
    CmdlineOption { name: "max_replication_slots", default: Some("10"), check: |v| int_min(v, 4, None) },
    CmdlineOption { name: "max_worker_processes", default: Some("8"), check: |v| int_min(v, 2, None) },
    CmdlineOption { name: "wal_log_hints", default: Some("on"), check: |v| jv::bool(v).is_some() },
];

/// The command-line option named `name` (case-insensitive), if it is one.
pub fn cmdline_option(name: &str) -> Option<&'static CmdlineOption> {
    CMDLINE_OPTIONS.iter().find(|o| o.name.eq_ignore_ascii_case(name))
}

/// The PostgreSQL parameters in effect, by Patroni's merge rules (`P:config.py
/// _process_postgresql_parameters`, `_build_effective_configuration`):
///
/// 1. Patroni's defaults for the command-line options;
/// 2. dynamic parameters; a command-line option that fails its check is dropped with a warning
///    (the default stays), `listen_addresses`/`port`/`cluster_name` are always dropped;
/// 3. local parameters win, except command-line options, which are dynamic-only (dropped with a
///    warning);
/// 4. `listen_addresses` and `port` come from `postgresql.listen`, `cluster_name` from `scope`,
///    and `hot_standby` is always `on`.
///
/// Pure: no I/O. Problems are returned as warnings.
pub fn effective_parameters(
    dynamic: &BTreeMap<String, JsonValue>,
    local: &BTreeMap<String, JsonValue>,
    listen: &str,
    scope: &str,
) -> (BTreeMap<String, JsonValue>, Vec<Problem>) {
    let mut problems = Vec::new();
    let mut out: BTreeMap<String, JsonValue> = CMDLINE_OPTIONS
        .iter()
        .filter_map(|o| o.default.map(|d| (o.name.to_string(), parse_default(d))))
        .collect();
    let remove_ci = |out: &mut BTreeMap<String, JsonValue>, name: &str| {
        let keys: Vec<String> = out.keys().filter(|k| k.eq_ignore_ascii_case(name)).cloned().collect();
        for k in keys {
            out.remove(&k);
        }
    };
    for (name, value) in dynamic {
        match cmdline_option(name) {
            None => {
                remove_ci(&mut out, name);
                out.insert(name.clone(), value.clone());
            }
            Some(opt) if (opt.check)(value) => {
                remove_ci(&mut out, name);
                let v = if opt.name.starts_with("max_") {
                    jv::int(value, None).map(|n| json!(n)).unwrap_or_else(|| value.clone())
                } else {
                    value.clone()
                };
                out.insert(opt.name.to_string(), v);
            }
            Some(opt) => {
                if !matches!(opt.name, "listen_addresses" | "port" | "cluster_name") {
                    problems.push(Problem::warning(
                        ProblemKind::Invalid,
                        format!("config.postgresql.parameters.{name}"),
                        format!(
                            "postgresql parameter {name}={} failed validation, defaulting to {}",
                            jv::show(value),
                            opt.default.unwrap_or("the PostgreSQL default")
                        ),
                    ));
                }
            }
        }
    }
    for (name, value) in local {
        match cmdline_option(name) {
            None => {
                remove_ci(&mut out, name);
                out.insert(name.clone(), value.clone());
            }
            Some(opt) => {
                if !matches!(opt.name, "listen_addresses" | "port" | "cluster_name") {
                    problems.push(Problem::warning(
                        ProblemKind::Misplaced,
                        format!("postgresql.parameters.{name}"),
                        format!("`{name}` can only be set in the dynamic configuration (bootstrap.dcs.postgresql.parameters or `praetorctl edit-config`); the local value is ignored"),
                    ));
                }
            }
        }
    }
    let (hosts, port) = split_listen(listen);
    out.insert("listen_addresses".into(), json!(hosts));
    if let Some(port) = port {
        out.insert("port".into(), json!(port));
    }
    out.insert("cluster_name".into(), json!(scope));
    out.insert("hot_standby".into(), json!("on"));
    (out, problems)
}

fn parse_default(d: &str) -> JsonValue {
    d.parse::<i64>().map(|n| json!(n)).unwrap_or_else(|_| json!(d))
}

/// Split `h1,h2:port` into the host list and the port.
pub fn split_listen(listen: &str) -> (String, Option<u16>) {
    match listen.rsplit_once(':') {
        Some((hosts, port)) if !hosts.ends_with(':') || hosts.starts_with('[') => {
            (hosts.trim_start_matches('[').trim_end_matches(']').to_string(), port.trim().parse().ok())
        }
        _ => (listen.to_string(), None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(v: JsonValue) -> (DynamicConfig, Vec<Problem>) {
        DynamicConfig::from_json(&v)
    }

    #[test]
    fn defaults_match_patroni() {
        let (c, p) = parse(json!({}));
        assert!(p.is_empty());
        assert_eq!((c.ttl, c.loop_wait, c.retry_timeout), (30, 10, 10));
        assert_eq!(c.maximum_lag_on_failover, 1_048_576);
        assert_eq!(c.maximum_lag_on_syncnode, -1);
        assert_eq!(c.primary_start_timeout, 300);
        assert_eq!(c.primary_stop_timeout, 0);
        assert_eq!(c.member_slots_ttl, 1800);
        assert_eq!(c.synchronous_node_count, 1);
        assert!(c.postgresql.use_slots);
        assert!(!c.postgresql.use_pg_rewind);
        assert_eq!(c.to_json(), "{}");
    }

    #[test]
    fn lenient_values_are_read_like_patroni() {
        let (c, p) = parse(json!({
            "ttl": "40", "loop_wait": "5s", "synchronous_mode": "on", "failsafe_mode": "yes",
            "master_start_timeout": 100, "pause": "true", "synchronous_node_count": "2",
            "member_slots_ttl": "30min"
        }));
        assert!(p.is_empty(), "{p:?}");
        assert_eq!((c.ttl, c.loop_wait), (40, 5));
        assert_eq!(c.synchronous_mode, SynchronousMode::On);
        assert!(c.failsafe_mode);
        assert_eq!(c.primary_start_timeout, 100);
        assert!(c.is_paused());
        assert_eq!(c.synchronous_node_count, 2);
        assert_eq!(c.member_slots_ttl, 1800);
        let (q, _) = parse(json!({"synchronous_mode": "quorum"}));
        assert_eq!(q.synchronous_mode, SynchronousMode::Quorum);
    }

    #[test]
    fn primary_timeout_wins_over_master_alias() {
        // global_config.py: primary_start_timeout is read first when present
        let (c, _) = parse(json!({"master_start_timeout": 100, "primary_start_timeout": 50}));
        assert_eq!(c.primary_start_timeout, 50);
    }

    #[test]
    fn garbage_falls_back_to_defaults_with_warnings() {
        let (c, p) = parse(
            json!({"ttl": "soon", "loop_wait": [1], "synchronous_mode": "sometimes", "slots": 7, "postgresql": "x"}),
        );
        assert_eq!(c.ttl, 30);
        assert_eq!(c.loop_wait, 10);
        assert_eq!(c.synchronous_mode, SynchronousMode::Off);
        assert!(c.slots.is_empty());
        let paths: Vec<&str> = p.iter().map(|p| p.path.as_str()).collect();
        for want in
            ["config.ttl", "config.loop_wait", "config.synchronous_mode", "config.slots", "config.postgresql"]
        {
            assert!(paths.contains(&want), "missing {want} in {paths:?}");
        }
        let (c, p) = DynamicConfig::from_json_str("{not json");
        assert_eq!(c, DynamicConfig::default());
        assert_eq!(p.len(), 1);
        let (_, p) = DynamicConfig::from_json_str("[1,2]");
        assert_eq!(p.len(), 1);
    }

    #[test]
    fn timeouts_are_adjusted_like_patroni() {
        // config.py _validate_and_adjust_timeouts: shrink loop_wait first
        let (c, p) = parse(json!({"ttl": 30, "loop_wait": 15, "retry_timeout": 10}));
        assert_eq!((c.ttl, c.loop_wait, c.retry_timeout), (30, 10, 10));
        assert_eq!(p.len(), 1);
        assert!(p[0].message.contains("loop_wait from 15 to 10"), "{}", p[0].message);
        // then retry_timeout when loop_wait is already minimal
        let (c, _) = parse(json!({"ttl": 20, "loop_wait": 10, "retry_timeout": 15}));
        assert_eq!((c.loop_wait, c.retry_timeout), (1, 9));
        // minimums
        let (c, p) = parse(json!({"loop_wait": 0, "retry_timeout": 1}));
        assert_eq!((c.loop_wait, c.retry_timeout), (1, 3));
        assert_eq!(p.len(), 2);
        assert!(c.loop_wait + 2 * c.retry_timeout <= c.ttl);
    }

    #[test]
    fn short_ttl_is_accepted_down_to_five_with_a_warning() {
        let (c, p) = parse(json!({"ttl": 10, "loop_wait": 2, "retry_timeout": 3}));
        assert_eq!((c.ttl, c.loop_wait, c.retry_timeout), (10, 2, 3));
        assert!(p.iter().any(|p| p.message.contains("false failovers")), "{p:?}");
        let (c, _) = parse(json!({"ttl": 2}));
        assert_eq!(c.ttl, PRAETOR_MIN_TTL);
        assert!(c.loop_wait + 2 * c.retry_timeout <= c.ttl);
    }

    #[test]
    fn json_round_trip_keeps_unknown_keys_and_given_keys() {
        let src = json!({
            "ttl": 30, "loop_wait": 10, "retry_timeout": 10, "maximum_lag_on_failover": 1048576,
            "postgresql": {"use_pg_rewind": true, "parameters": {"max_connections": 200, "wal_level": "logical"}, "pg_hba": ["host all all 0.0.0.0/0 md5"]},
            "slots": {"s1": {"type": "logical", "database": "db", "plugin": "pgoutput"}},
            "primary_race_backoff": 3, "some_future_key": {"a": 1}
        });
        let (c, _) = parse(src.clone());
        let out: JsonValue = serde_json::from_str(&c.to_json()).expect("valid json");
        assert_eq!(out, src);
        let (c2, p) = parse(out);
        assert!(p.is_empty());
        assert_eq!(c, c2);
        // Programmatic changes appear in the output.
        let mut c3 = c2.clone();
        c3.pause = Some(true);
        c3.synchronous_mode = SynchronousMode::Quorum;
        let out: JsonValue = serde_json::from_str(&c3.to_json()).expect("valid json");
        assert_eq!(out["pause"], json!(true));
        assert_eq!(out["synchronous_mode"], json!("quorum"));
        assert!(!c3.to_json().contains("\": "), "compact");
    }

    /// The documented defaults (README "Partitions"): fencing on, the strict-sync handover off, so
    /// a strict cluster behaves as under Patroni unless the operator turns the handover on.
    #[test]
    fn praetor_defaults_fence_on_strict_sync_failover_off() {
        let d = PraetorSettings::default();
        assert!(d.fence_isolated_primary);
        assert_eq!(d.fence_replica_silence_ms, 300);
        assert!(!d.strict_sync_failover);
        assert_eq!(crate::ha::fence::PartitionPolicy::default().strict_sync_failover, d.strict_sync_failover);
    }

    /// praetor's own section: parsed with defaults, bad values warned about by path, and kept
    /// byte for byte when `/config` is written back (Patroni ignores the key).
    #[test]
    fn praetor_section_is_parsed_leniently_and_kept() {
        let (c, p) = parse(json!({"ttl": 30}));
        assert!(p.is_empty());
        assert_eq!(c.praetor, PraetorSettings::default());
        assert!(c.praetor.fence_isolated_primary);
        let src = json!({"praetor": {"fence_isolated_primary": "off", "fence_replica_silence_ms": "1s",
            "strict_sync_failover": false}});
        let (c, p) = parse(src.clone());
        assert!(p.is_empty(), "{p:?}");
        assert!(!c.praetor.fence_isolated_primary && !c.praetor.strict_sync_failover);
        assert_eq!(c.praetor.fence_replica_silence_ms, 1000);
        let out: JsonValue = serde_json::from_str(&c.to_json()).expect("valid json");
        assert_eq!(out["praetor"], src["praetor"]);
        let (c, p) =
            parse(json!({"praetor": {"fence_replica_silence_ms": 50, "fence_isolated_primary": "maybe"}}));
        assert_eq!(c.praetor, PraetorSettings::default());
        let paths: Vec<&str> = p.iter().map(|p| p.path.as_str()).collect();
        assert!(paths.contains(&"config.praetor.fence_replica_silence_ms"), "{paths:?}");
        assert!(paths.contains(&"config.praetor.fence_isolated_primary"), "{paths:?}");
        let (_, p) =
            DynamicConfig::parse(&json!({"praetor": {"fence_isolated": true}}), "bootstrap.dcs", true);
        assert_eq!(p.len(), 1, "{p:?}");
        assert_eq!(p[0].path, "bootstrap.dcs.praetor.fence_isolated");
    }

    #[test]
    fn cache_file_round_trip() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(DynamicConfig::load_cache(dir.path()).is_none());
        let (c, _) =
            parse(json!({"ttl": 40, "pause": true, "postgresql": {"parameters": {"work_mem": "8MB"}}}));
        c.save_cache(dir.path()).expect("save");
        let (back, problems) = DynamicConfig::load_cache(dir.path()).expect("present");
        assert!(problems.is_empty());
        assert_eq!(back, c);
        std::fs::write(dir.path().join(CACHE_FILE), "garbage").expect("write");
        let (back, problems) = DynamicConfig::load_cache(dir.path()).expect("present");
        assert_eq!(back, DynamicConfig::default());
        assert_eq!(problems.len(), 1);
    }

    /// The agent may run as root while PostgreSQL (which must read the file for pg_basebackup)
    /// runs as the data directory's owner: the cache gets that owner.
    #[test]
    fn cache_file_belongs_to_the_data_directory_owner() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("data");
        std::fs::create_dir(&data).expect("mkdir");
        let root = nix::unistd::geteuid().is_root();
        if root {
            std::os::unix::fs::chown(&data, Some(65534), Some(65534)).expect("chown to nobody");
        }
        let (c, _) = parse(json!({"ttl": 40}));
        c.save_cache(&data).expect("save");
        let want = std::fs::metadata(&data).expect("stat").uid();
        assert_eq!(std::fs::metadata(data.join(CACHE_FILE)).expect("stat").uid(), want);
        if root {
            assert_eq!(want, 65534);
        }
    }

    #[test]
    fn slots_aliases_and_standby_cluster() {
        let (c, _) = parse(
            json!({"permanent_slots": {"a": null, "b": {"database": "d", "plugin": "p"}}, "standby_cluster": {"host": "h", "port": 5432}}),
        );
        assert_eq!(c.slots["a"].kind, SlotKind::Physical);
        assert_eq!(c.slots["b"].kind, SlotKind::Logical);
        assert!(c.is_standby_cluster());
        assert_eq!(c.standby_cluster.as_ref().and_then(|s| s.port.clone()).as_deref(), Some("5432"));
        let out: JsonValue = serde_json::from_str(&c.to_json()).expect("json");
        assert_eq!(out["standby_cluster"]["port"], json!(5432));
        assert!(out.get("permanent_slots").is_some());
    }

    #[test]
    fn cmdline_options_come_only_from_dynamic() {
        // config.py _process_postgresql_parameters
        let dynamic: BTreeMap<String, JsonValue> = [
            ("max_connections", json!(200)),
            ("wal_level", json!("bogus")),
            ("work_mem", json!("8MB")),
            ("port", json!(1)),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let local: BTreeMap<String, JsonValue> =
            [("max_connections", json!(500)), ("work_mem", json!("16MB")), ("shared_buffers", json!("1GB"))]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect();
        let (eff, problems) = effective_parameters(&dynamic, &local, "0.0.0.0,127.0.0.1:5433", "demo");
        assert_eq!(eff["max_connections"], json!(200));
        assert_eq!(eff["wal_level"], json!("hot_standby"));
        assert_eq!(eff["work_mem"], json!("16MB"));
        assert_eq!(eff["shared_buffers"], json!("1GB"));
        assert_eq!(eff["listen_addresses"], json!("0.0.0.0,127.0.0.1"));
        assert_eq!(eff["port"], json!(5433));
        assert_eq!(eff["cluster_name"], json!("demo"));
        assert_eq!(eff["hot_standby"], json!("on"));
        assert_eq!(eff["max_wal_senders"], json!(10));
        assert!(problems.iter().any(|p| p.path == "postgresql.parameters.max_connections"));
        assert!(problems.iter().any(|p| p.path == "config.postgresql.parameters.wal_level"));
    }
}
