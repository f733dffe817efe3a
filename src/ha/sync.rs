//! Synchronous replication policy, pure (PATRONI-COMPAT §6.9): which standbys may be synchronous,
//! the value of `synchronous_standby_names` (ssn), when a standby counts as confirmed, and the order
//! in which ssn and the `/sync` key change so that every member named in `/sync` really was
//! synchronous.
//!
//! Owns: the synchronous-replication state machine of the leader. Must not do I/O: the executor
//! observes PostgreSQL and the DCS, calls [`multisync_step`] or [`QuorumResolver`] for the next
//! change, performs it, observes again and repeats (bounded by the cycle's time budget).
//!
//! Two modes:
//! - `synchronous_mode: on`: ssn is `name` or `N (a,b)` (all listed must acknowledge); `/sync`
//!   names only standbys confirmed synchronous. Adding: ssn first, `/sync` once confirmed.
//!   Removing: `/sync` shrinks first, then ssn.
//! - `synchronous_mode: quorum`: ssn is `ANY numsync (…)`, `/sync` holds the voters and the
//!   `quorum` a new leader must gather. The invariant `quorum + numsync > |voters ∪ sync|` (leader
//!   counted once in each) guarantees that any set of standbys able to acknowledge a commit overlaps
//!   any set able to elect a new leader; [`QuorumResolver`] only ever makes changes that keep it.

use crate::dcs::model::SyncState;
use std::collections::BTreeMap;
use std::fmt;

/// The placeholder ssn of strict mode without candidates: any standby may acknowledge, none is
/// named, so commits wait until one connects.
pub const STAR: &str = "*";

// ----- names ------------------------------------------------------------------------------------

/// A set of member names compared case-insensitively (PostgreSQL compares standby names with
/// `pg_strcasecmp`, Patroni with `CaseInsensitiveSet`); keeps the spelling first inserted.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Names(BTreeMap<String, String>);

impl Names {
    /// An empty set.
    pub fn new() -> Names {
        Names::default()
    }

    /// Add `name`.
    pub fn insert(&mut self, name: &str) {
        self.0.entry(name.to_lowercase()).or_insert_with(|| name.to_string());
    }

    /// Remove `name`.
    pub fn remove(&mut self, name: &str) {
        self.0.remove(&name.to_lowercase());
    }

    /// `name` is in the set.
    pub fn contains(&self, name: &str) -> bool {
        self.0.contains_key(&name.to_lowercase())
    }

    /// Number of names.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// No names.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The names, sorted case-insensitively.
    pub fn to_vec(&self) -> Vec<String> {
        self.0.values().cloned().collect()
    }

    /// Names in both sets.
    pub fn and(&self, o: &Names) -> Names {
        Names(
            self.0
                .iter()
                .filter(|(k, _)| o.0.contains_key(*k))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        )
    }

    /// Names in either set.
    pub fn or(&self, o: &Names) -> Names {
        let mut n = self.clone();
        for (k, v) in &o.0 {
            n.0.entry(k.clone()).or_insert_with(|| v.clone());
        }
        n
    }

    /// Names of `self` not in `o`.
    pub fn minus(&self, o: &Names) -> Names {
        Names(
            self.0
                .iter()
                .filter(|(k, _)| !o.0.contains_key(*k))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        )
    }

    /// Every name of `self` is in `o`.
    pub fn is_subset(&self, o: &Names) -> bool {
        self.0.keys().all(|k| o.0.contains_key(k))
    }

    /// The first `n` names in sorted order (`reverse`: the last `n`, highest first).
    fn take_sorted(&self, n: usize, reverse: bool) -> Names {
        let it: Box<dyn Iterator<Item = (&String, &String)>> =
            if reverse { Box::new(self.0.iter().rev()) } else { Box::new(self.0.iter()) };
        Names(it.take(n).map(|(k, v)| (k.clone(), v.clone())).collect())
    }
}

impl<S: AsRef<str>> FromIterator<S> for Names {
    fn from_iter<I: IntoIterator<Item = S>>(it: I) -> Self {
        let mut n = Names::new();
        for s in it {
            n.insert(s.as_ref());
        }
        n
    }
}

impl fmt::Debug for Names {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.0.values()).finish()
    }
}

impl fmt::Display for Names {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_vec().join(", "))
    }
}

// ----- synchronous_standby_names ----------------------------------------------------------------

/// How ssn selects standbys.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SsnKind {
    /// Empty: no synchronous standby.
    #[default]
    Off,
    /// `FIRST n (…)`, `n (…)` or a plain list: the first `n` connected names by position.
    Priority,
    /// `ANY n (…)`.
    Quorum,
}

/// A parsed `synchronous_standby_names`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ssn {
    /// Selection method.
    pub kind: SsnKind,
    /// How many standbys must acknowledge.
    pub num: u32,
    /// Listed names (without `*`).
    pub members: Names,
    /// `*` is listed: any standby qualifies.
    pub has_star: bool,
}

#[derive(Debug, PartialEq)]
enum Tok {
    Ident(String, bool),
    Num(u32),
    Open,
    Close,
    Comma,
    Star,
}

fn tokenize(s: &str) -> Result<Vec<Tok>, String> {
    let mut out = Vec::new();
    let mut it = s.chars().peekable();
    while let Some(&c) = it.peek() {
        match c {
            c if c.is_whitespace() => {
                it.next();
            }
            '(' | ')' | ',' | '*' => {
                it.next();
                out.push(match c {
                    '(' => Tok::Open,
                    ')' => Tok::Close,
                    ',' => Tok::Comma,
                    _ => Tok::Star,
                });
            }
            '"' => {
                it.next();
                let mut name = String::new();
                loop {
                    match it.next() {
                        Some('"') if it.peek() == Some(&'"') => {
                            it.next();
                            name.push('"');
                        }
                        Some('"') => break,
                        Some(ch) => name.push(ch),
                        None => return Err(format!("unterminated quoted name in {s:?}")),
                    }
                }
                out.push(Tok::Ident(name, true));
            }
            c if c.is_ascii_digit() => {
                let mut n = String::new();
                while let Some(&d) = it.peek().filter(|d| d.is_ascii_alphanumeric() || **d == '_') {
                    n.push(d);
                    it.next();
                }
                match n.parse() {
                    Ok(v) => out.push(Tok::Num(v)),
                    Err(_) => out.push(Tok::Ident(n, false)),
                }
            }
            c if c.is_alphanumeric() || c == '_' || c == '$' || c == '-' || c == '.' => {
                let mut n = String::new();
                while let Some(&d) =
                    it.peek().filter(|d| d.is_alphanumeric() || matches!(**d, '_' | '$' | '-' | '.'))
                {
                    n.push(d);
                    it.next();
                }
                out.push(Tok::Ident(n, false));
            }
            other => return Err(format!("unexpected character {other:?} in {s:?}")),
        }
    }
    Ok(out)
}

/// Parse `synchronous_standby_names` (PostgreSQL's grammar: `FIRST n (list)`, `ANY n (list)`,
/// `n (list)` or a plain list meaning `FIRST 1`). Errors name the offending text.
pub fn parse_ssn(s: &str) -> Result<Ssn, String> {
    let toks = tokenize(s)?;
    if toks.is_empty() {
        return Ok(Ssn::default());
    }
    let keyword = |t: &Tok, k: &str| matches!(t, Tok::Ident(w, false) if w.eq_ignore_ascii_case(k));
    let (kind, num, list) = match toks.as_slice() {
        [k, Tok::Num(n), Tok::Open, rest @ ..] if keyword(k, "first") || keyword(k, "any") => {
            (if keyword(k, "any") { SsnKind::Quorum } else { SsnKind::Priority }, *n, rest)
        }
        [Tok::Num(n), Tok::Open, rest @ ..] => (SsnKind::Priority, *n, rest),
        list => (SsnKind::Priority, 1, list),
    };
    let list = if toks.get(1) == Some(&Tok::Open) || toks.get(2) == Some(&Tok::Open) {
        match list.split_last() {
            Some((Tok::Close, inner)) => inner,
            _ => return Err(format!("missing ')' in synchronous_standby_names {s:?}")),
        }
    } else {
        list
    };
    let mut ssn = Ssn { kind, num, members: Names::new(), has_star: false };
    let mut expect_name = true;
    for t in list {
        match (t, expect_name) {
            (Tok::Ident(n, _), true) => ssn.members.insert(n),
            (Tok::Num(n), true) => ssn.members.insert(&n.to_string()),
            (Tok::Star, true) => ssn.has_star = true,
            (Tok::Comma, false) => {}
            _ => return Err(format!("unexpected token {t:?} in synchronous_standby_names {s:?}")),
        }
        expect_name = !expect_name;
    }
    if expect_name {
        return Err(format!("synchronous_standby_names {s:?} ends without a name"));
    }
    Ok(ssn)
}

/// Quote a standby name for ssn when it is not a plain lower-case identifier (or is a keyword).
pub fn quote_standby_name(n: &str) -> String {
    let plain = n.chars().next().is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && n.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '$')
        && !["first", "any"].contains(&n);
    if plain { n.to_string() } else { format!("\"{}\"", n.replace('"', "\"\"")) }
}

/// What the running server supports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PgCaps {
    /// PostgreSQL 9.6+: `N (a,b)` with several synchronous standbys.
    pub multiple_sync: bool,
    /// PostgreSQL 10+: `ANY N (…)`.
    pub quorum_commit: bool,
}

impl PgCaps {
    /// Capabilities of `server_version_num`.
    pub fn of(server_version: u32) -> PgCaps {
        PgCaps { multiple_sync: server_version >= 90600, quorum_commit: server_version >= 100000 }
    }
}

/// Render ssn for `sync` (names or [`STAR`]) and `num` (Patroni `set_synchronous_standby_names`):
/// an empty set with `num >= 1` becomes `*`; several names become `N (a,b)`; quorum mode always
/// uses `ANY N (…)`; names sorted and quoted. Empty set and no `num`: empty string (no synchronous standby).
pub fn render_ssn(sync: &Names, num: Option<u32>, quorum: bool, caps: PgCaps) -> String {
    let star = sync.contains(STAR) || (num.unwrap_or(0) >= 1 && sync.is_empty());
    let list: Vec<String> = if star {
        vec![STAR.to_string()]
    } else {
        sync.to_vec().iter().map(|n| quote_standby_name(n)).collect()
    };
    let quorum = quorum && caps.multiple_sync;
    if caps.multiple_sync && (quorum && !list.is_empty() || list.len() > 1) {
        let n = num.unwrap_or(list.len() as u32);
        let prefix = if quorum && caps.quorum_commit { "ANY " } else { "" };
        format!("{prefix}{n} ({})", list.join(","))
    } else {
        list.into_iter().next().unwrap_or_default()
    }
}

// ----- observation ------------------------------------------------------------------------------

/// A cluster member as the synchronous policy sees it (from its member key).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyncMember {
    /// Member name (= `application_name`).
    pub name: String,
    /// Its member key says PostgreSQL is `running`.
    pub running: bool,
    /// `nosync` tag (explicit, or `sync_priority <= 0`).
    pub nosync: bool,
    /// Effective `sync_priority` (0 when `nosync`, default 1).
    pub sync_priority: i64,
    /// Effective `nofailover`.
    pub nofailover: bool,
    /// `replicatefrom` tag.
    pub replicatefrom: Option<String>,
}

/// Effective `nosync` and `sync_priority` of a tag map (Patroni `tags.py`): an explicit `nosync`
/// wins, else `sync_priority <= 0`; priority 0 when `nosync`, else the tag, default 1.
pub fn tags_sync(tags: &serde_json::Map<String, serde_json::Value>) -> (bool, i64) {
    use crate::dcs::model::value_is_true;
    let prio = match tags.get("sync_priority") {
        Some(serde_json::Value::Number(n)) => n.as_i64(),
        Some(serde_json::Value::String(s)) => s.trim().parse().ok(),
        _ => None,
    };
    let nosync = match tags.get("nosync") {
        Some(v) if !v.is_null() => value_is_true(v),
        _ => prio.is_some_and(|p| p <= 0),
    };
    (nosync, if nosync { 0 } else { prio.unwrap_or(1) })
}

/// One `pg_stat_replication` connection on the primary.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Walsender {
    /// Walsender pid.
    pub pid: i32,
    /// `application_name`.
    pub name: String,
    /// `sync_state`.
    pub sync_state: String,
    /// `write_lsn`.
    pub write_lsn: Option<u64>,
    /// `flush_lsn`.
    pub flush_lsn: Option<u64>,
    /// `replay_lsn`.
    pub replay_lsn: Option<u64>,
}

/// The static settings of the state machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SyncSettings {
    /// `synchronous_mode: quorum`.
    pub quorum: bool,
    /// `synchronous_mode_strict`.
    pub strict: bool,
    /// `synchronous_node_count`.
    pub node_count: u32,
    /// `maximum_lag_on_syncnode` in bytes; `<= 0` disables the check.
    pub maximum_lag_on_syncnode: i64,
    /// Server capabilities.
    pub caps: PgCaps,
    /// praetor (`praetor.strict_sync_failover` with `synchronous_mode_strict`): a synchronous
    /// standby that disconnects stays named in `/sync` and ssn while no other candidate streams,
    /// instead of Patroni's `/sync` without standbys and ssn `*`. Commits wait for it either way;
    /// naming it keeps every other standby from acknowledging (as `*` would allow), so it still
    /// has every acknowledged commit and stays the candidate of the strict-sync handover
    /// ([`super::fence::strict_sync_handover`]).
    pub hold_silent_standby: bool,
}

impl SyncSettings {
    /// Patroni `min_synchronous_nodes`: strict mode never runs with fewer than one.
    pub fn min_sync(&self) -> u32 {
        u32::from(self.strict)
    }

    /// Standbys wanted (1 when the server cannot have several).
    pub fn node_count(&self) -> u32 {
        if self.caps.multiple_sync { self.node_count.max(1) } else { 1 }
    }
}

/// The leader's inputs of one evaluation.
#[derive(Clone, Debug)]
pub struct SyncView<'a> {
    /// This node (the primary).
    pub me: &'a str,
    /// All members from the DCS.
    pub members: &'a [SyncMember],
    /// `pg_stat_replication`.
    pub walsenders: &'a [Walsender],
    /// `synchronous_commit` of the primary: which LSN column counts.
    pub synchronous_commit: &'a str,
    /// The primary's flush LSN (Patroni `last_operation`).
    pub primary_lsn: u64,
    /// The `/sync` key.
    pub sync_key: &'a SyncState,
    /// Settings.
    pub settings: SyncSettings,
}

/// Patroni `_SyncState`: the outcome of [`SyncTracker::current_state`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CurrentSync {
    /// Kind of the current ssn.
    pub kind: SsnKind,
    /// Standbys ssn requires.
    pub numsync: u32,
    /// Names in ssn (empty when it holds `*`).
    pub sync: Names,
    /// Names in ssn confirmed synchronous (reached the primary's flush LSN of the last ssn change
    /// while reported `sync`/`quorum`).
    pub sync_confirmed: Names,
    /// Streaming standbys eligible to be synchronous, best first, at most `node_count` outside
    /// quorum mode.
    pub active: Names,
}

/// Candidates in preference order (Patroni `_ReplicaList`): streaming members known running, not
/// `nosync`, not supposed to cascade from another standby; sorted by `sync_priority`, then state
/// `sync`, then LSN, all descending.
fn candidates<'a>(v: &SyncView<'a>) -> (Vec<(&'a Walsender, &'a SyncMember, u64)>, u64) {
    let col = match v.synchronous_commit {
        "remote_apply" => |w: &Walsender| w.replay_lsn,
        "remote_write" => |w: &Walsender| w.write_lsn,
        _ => |w: &Walsender| w.flush_lsn,
    };
    let eligible: Vec<&SyncMember> =
        v.members.iter().filter(|m| m.running && !m.nosync && !m.name.eq_ignore_ascii_case(v.me)).collect();
    let find = |n: &str| eligible.iter().copied().find(|m| m.name.eq_ignore_ascii_case(n));
    let streaming = |n: &str| v.walsenders.iter().any(|w| w.name.eq_ignore_ascii_case(n) && col(w).is_some());
    // A member whose `replicatefrom` chain ends at a standby that streams from us cascades.
    let cascades = |m: &SyncMember| {
        let mut cur = m;
        for _ in 0..v.members.len() {
            let Some(up) = cur.replicatefrom.as_deref().and_then(find) else { return false };
            if up.replicatefrom.is_none() {
                return streaming(&up.name);
            }
            cur = up;
        }
        false
    };
    let mut out: Vec<(&Walsender, &SyncMember, u64)> = Vec::new();
    for w in v.walsenders {
        let (Some(lsn), Some(m)) = (col(w), find(&w.name)) else { continue };
        if cascades(m) || out.iter().any(|(o, _, _)| o.name.eq_ignore_ascii_case(&w.name)) {
            continue;
        }
        out.push((w, m, lsn));
    }
    out.sort_by(|a, b| {
        (b.1.sync_priority, b.0.sync_state.as_str(), b.2).cmp(&(
            a.1.sync_priority,
            a.0.sync_state.as_str(),
            a.2,
        ))
    });
    let max_lsn = if out.len() > 1 { out.iter().map(|c| c.2).max().unwrap_or(0) } else { v.primary_lsn };
    (out, max_lsn)
}

/// What the leader remembers about ssn between evaluations (Patroni `SyncHandler`): the last value
/// seen, the primary's flush LSN when it changed, and the walsenders confirmed since.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SyncTracker {
    /// Last ssn value seen on the server.
    pub seen: String,
    /// Parsed `seen` (empty when it did not parse).
    pub parsed: Ssn,
    /// Primary flush LSN when `seen` was first observed.
    pub flush_lsn_at_change: u64,
    /// Confirmed standbys: lower-case name → walsender pid.
    ready: BTreeMap<String, i32>,
}

impl SyncTracker {
    /// Record the ssn the server runs with now. Returns `true` when it changed: standbys newly
    /// listed must then reach `primary_lsn` before they count (the caller should generate a little
    /// WAL so that they can). A value that does not parse counts as empty; the error is returned
    /// for logging.
    pub fn observe_ssn(&mut self, ssn: &str, primary_lsn: u64) -> (bool, Option<String>) {
        if ssn == self.seen && !(self.seen.is_empty() && self.flush_lsn_at_change == 0 && primary_lsn > 0) {
            return (false, None);
        }
        let changed = ssn != self.seen;
        self.seen = ssn.to_string();
        let (parsed, err) = match parse_ssn(ssn) {
            Ok(p) => (p, None),
            Err(e) => (Ssn::default(), Some(e)),
        };
        self.parsed = parsed;
        let members = &self.parsed.members;
        self.ready.retain(|k, _| members.contains(k));
        self.flush_lsn_at_change = primary_lsn;
        (changed, err)
    }

    /// Patroni `current_state` (after [`Self::observe_ssn`]): mark standbys confirmed and choose
    /// the active candidates.
    pub fn current_state(&mut self, v: &SyncView<'_>) -> CurrentSync {
        let s = v.settings;
        let (cands, max_lsn) = candidates(v);
        for (w, m, lsn) in &cands {
            let key = m.name.to_lowercase();
            if self.ready.get(&key).is_some_and(|pid| *pid != w.pid) {
                // The standby reconnected: confirm it again.
                self.ready.remove(&key);
            }
            if self.ready.contains_key(&key) || !self.parsed.members.contains(&m.name) {
                continue;
            }
            let confirmed = if s.quorum {
                *lsn >= self.flush_lsn_at_change
                    && (w.sync_state == "quorum"
                        || !s.caps.quorum_commit && matches!(w.sync_state.as_str(), "sync" | "potential"))
            } else {
                sync_listed(v.sync_key, &m.name) || w.sync_state == "sync" && *lsn >= self.flush_lsn_at_change
            };
            if confirmed {
                self.ready.insert(key, w.pid);
            }
        }
        let want = s.node_count() as usize;
        let mut out = CurrentSync {
            kind: self.parsed.kind,
            numsync: if self.parsed.has_star && s.quorum { 0 } else { self.parsed.num },
            sync: if self.parsed.has_star { Names::new() } else { self.parsed.members.clone() },
            ..Default::default()
        };
        if self.parsed.kind == SsnKind::Off {
            out.numsync = 0;
        }
        // Members without nofailover first (stable: keeps the order above otherwise).
        let mut ordered: Vec<&(&Walsender, &SyncMember, u64)> = cands.iter().collect();
        ordered.sort_by_key(|c| c.1.nofailover);
        for (w, m, lsn) in ordered {
            if s.maximum_lag_on_syncnode > 0
                && max_lsn.saturating_sub(*lsn) > s.maximum_lag_on_syncnode as u64
            {
                continue;
            }
            let ready = self.ready.contains_key(&m.name.to_lowercase());
            if s.quorum {
                // nofailover nodes only fill up to node_count: they cannot win a race.
                if !m.nofailover || out.active.len() < want {
                    if ready {
                        out.sync_confirmed.insert(&m.name);
                    }
                    out.active.insert(&m.name);
                }
            } else {
                out.active.insert(&m.name);
                if w.sync_state == "sync" && ready {
                    out.sync_confirmed.insert(&m.name);
                }
                if out.active.len() >= want {
                    break;
                }
            }
        }
        out
    }
}

fn sync_listed(sync: &SyncState, name: &str) -> bool {
    sync.members().iter().any(|m| m.eq_ignore_ascii_case(name))
}

// ----- synchronous_mode: on ---------------------------------------------------------------------

/// One change of the synchronous state, to perform before evaluating again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SyncStep {
    /// Write `/sync` (CAS on the version read) with `leader`, `standbys`, `quorum`.
    WriteSync {
        /// Leader field.
        leader: String,
        /// `sync_standby` names.
        standbys: Names,
        /// `quorum` field.
        quorum: u32,
        /// Log line.
        why: String,
    },
    /// Set ssn to `value` (reload; wait until the server runs with it).
    SetSsn {
        /// The new value.
        value: String,
        /// Log line.
        why: String,
    },
    /// Nothing to change now.
    Done,
}

/// The next change in `synchronous_mode: on` (Patroni `_process_multisync_replication`), given the
/// `/sync` key and the current state, or [`SyncStep::Done`]. Calling it again after performing the
/// step (with a fresh observation) walks the safe order:
/// 1. `/sync` missing or written by another leader ⇒ take it with no standbys;
/// 2. ssn already equals `/sync` but `/sync` lists names that are not confirmed ⇒ rewrite `/sync`
///    with the confirmed ones;
/// 3. `/sync` names someone not confirmed ⇒ shrink `/sync` to the confirmed voters first;
/// 4. ssn differs from the chosen standbys ⇒ set ssn (`*` when strict and nobody is available);
/// 5. confirmed standbys missing from `/sync` ⇒ add them.
///
/// With [`SyncSettings::hold_silent_standby`] (strict, no candidate streams, ssn names exactly the
/// `/sync` standbys) nothing changes: steps 3 and 4 wait until a candidate streams again.
pub fn multisync_step(
    me: &str,
    key: &SyncState,
    cur: &CurrentSync,
    current_ssn: &str,
    s: SyncSettings,
) -> SyncStep {
    let write = |standbys: Names, why: String| SyncStep::WriteSync {
        leader: me.to_string(),
        standbys,
        quorum: 0,
        why,
    };
    if key.is_empty() {
        return write(Names::new(), "Enabled synchronous replication".into());
    }
    if !key.leader.as_deref().is_some_and(|l| l.eq_ignore_ascii_case(me)) {
        return write(
            Names::new(),
            format!(
                "Inconsistent state of /sync key detected, leader = {} doesn't match {me}, updating synchronous replication key",
                key.leader.as_deref().unwrap_or("")
            ),
        );
    }
    let voters: Names = key.members().iter().collect();
    let picked = &cur.active;
    let confirmed = &cur.sync_confirmed;
    if *picked == voters && voters != *confirmed {
        return write(
            confirmed.clone(),
            format!(
                "Inconsistent state between synchronous_standby_names = [{confirmed}] and /sync = [{voters}] key detected, updating synchronous replication key"
            ),
        );
    }
    if s.strict
        && s.hold_silent_standby
        && picked.is_empty()
        && !voters.is_empty()
        && current_ssn == render_ssn(&voters, None, false, s.caps)
    {
        // Nobody else could take over the acknowledgements: keep the silent standby named.
        return SyncStep::Done;
    }
    let common = voters.and(confirmed);
    if common != voters {
        return write(
            common.clone(),
            format!("Updating synchronous privilege temporarily from [{voters}] to [{common}]"),
        );
    }
    let target: Names =
        if s.strict && picked.is_empty() { [STAR].into_iter().collect() } else { picked.clone() };
    let value = render_ssn(&target, None, false, s.caps);
    if value != current_ssn {
        let why = if target.contains(STAR) {
            "No standbys available! Assigning synchronous standby status to ['*']".to_string()
        } else {
            format!("Assigning synchronous standby status to [{target}]")
        };
        return SyncStep::SetSsn { value, why };
    }
    if !confirmed.is_empty() && *confirmed != voters {
        return write(confirmed.clone(), format!("Synchronous standby status assigned to [{confirmed}]"));
    }
    SyncStep::Done
}

/// ssn a node sets right before promoting (Patroni `process_sync_replication_prepromote`).
/// Quorum commit with `/sync` written: keep syncing to the voters (the new leader leaves them,
/// enters only when it was not a voter) with `numsync = voters - quorum - 1`; otherwise no names,
/// and `*` when strict. The `/sync` key is claimed separately (non-quorum) before this.
pub fn prepromote_ssn(me: &str, key: &SyncState, s: SyncSettings) -> String {
    if s.quorum && !key.is_empty() && s.caps.multiple_sync {
        let mut sync: Names = key.members().iter().collect();
        let mut numsync = sync.len() as i64 - i64::from(key.quorum) - 1;
        if sync.contains(me) {
            sync.remove(me);
        } else {
            numsync += 1;
        }
        if numsync <= 0 {
            return render_ssn(&Names::new(), Some(s.min_sync()), true, s.caps);
        }
        return render_ssn(&sync, Some(numsync as u32), true, s.caps);
    }
    render_ssn(&Names::new(), Some(s.min_sync()), s.quorum, s.caps)
}

/// Primary only: why commits wait for a synchronous standby right now, or `None` (praetor's
/// `writes_blocked` status). Commits wait when ssn asks for more acknowledging standbys than are
/// connected in state `sync`/`quorum`.
pub fn writes_blocked(ssn: &str, walsenders: &[(String, String)]) -> Option<String> {
    let parsed = parse_ssn(ssn).ok()?;
    if parsed.kind == SsnKind::Off || parsed.num == 0 {
        return None;
    }
    let acking = walsenders
        .iter()
        .filter(|(state, sync_state)| {
            state == "streaming" && matches!(sync_state.as_str(), "sync" | "quorum")
        })
        .count() as u32;
    (acking < parsed.num).then(|| {
        format!(
            "waiting for {} synchronous standby(s), {acking} connected (synchronous_standby_names = '{ssn}')",
            parsed.num
        )
    })
}

/// Patroni `Ha.is_sync_standby`: `me` is named in `/sync` **and** `/sync` was written by the
/// current leader (names compared case-insensitively). A key still carrying a former leader's
/// standbys proves nothing about who is synchronous to the new one.
pub fn is_sync_standby(leader: Option<&str>, sync: &SyncState, me: &str) -> bool {
    let Some(leader) = leader else { return false };
    sync.leader.as_deref().is_some_and(|l| l.eq_ignore_ascii_case(leader)) && sync_listed(sync, me)
}

/// What a node reports about itself in its status and metrics (`sync_standby` / `quorum_standby`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StandbyKind {
    /// Not a synchronous standby (or not a standby at all).
    NotSync,
    /// `synchronous_mode: on` and named in `/sync` by the current leader.
    Sync,
    /// `synchronous_mode: quorum` and named in `/sync` by the current leader.
    Quorum,
}

/// The status role of this node (Patroni `get_postgresql_status` plus its `is_sync_standby`
/// leader check): only a running replica, with synchronous mode on, that the current leader's
/// `/sync` key names; `quorum` picks which of the two flags.
pub fn standby_kind(
    sync_mode_on: bool,
    quorum: bool,
    is_replica: bool,
    leader: Option<&str>,
    sync: &SyncState,
    me: &str,
) -> StandbyKind {
    if !sync_mode_on || !is_replica || !is_sync_standby(leader, sync, me) {
        StandbyKind::NotSync
    } else if quorum {
        StandbyKind::Quorum
    } else {
        StandbyKind::Sync
    }
}

// ----- synchronous_mode: quorum -----------------------------------------------------------------

/// One transition of the quorum state (Patroni `Transition`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Transition {
    /// Set ssn to `ANY num (names)`.
    Sync {
        /// numsync.
        num: u32,
        /// Names.
        names: Names,
    },
    /// Write `/sync` with `leader`, `quorum`, voters `names`.
    Quorum {
        /// Leader.
        leader: String,
        /// Quorum.
        num: u32,
        /// Voters.
        names: Names,
    },
    /// Stop applying transitions; observe again (nothing changed, or ssn just became non-empty
    /// and standbys need a moment to become synchronous).
    Restart,
}

/// The quorum invariant or an input was broken.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuorumError(pub String);

impl fmt::Display for QuorumError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Patroni `QuorumStateResolver`: from the current `/sync` (leader, quorum, voters) and ssn
/// (numsync, sync), the confirmed count and the active standbys, the transitions to the optimal
/// state `sync = voters = active`, `numsync = min(sync_wanted, |active|)`,
/// `quorum = |active| - numsync`, each keeping `quorum + numsync >= |voters ∪ sync|` (leader
/// included on both sides). Increases happen before decreases: raise numsync before lowering
/// quorum, raise quorum before lowering numsync.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuorumResolver {
    /// `/sync` leader.
    pub leader: String,
    /// `/sync` quorum.
    pub quorum: u32,
    /// `/sync` voters.
    pub voters: Names,
    /// ssn numsync.
    pub numsync: u32,
    /// ssn names.
    pub sync: Names,
    /// Standbys confirmed since the last ssn change.
    pub numsync_confirmed: u32,
    /// Eligible streaming standbys.
    pub active: Names,
    /// `synchronous_node_count`.
    pub sync_wanted: u32,
    /// This node (differs from `leader` right after a failover).
    pub leader_wanted: String,
    out: Vec<Transition>,
}

fn n(x: usize) -> u32 {
    x as u32
}

impl QuorumResolver {
    /// A resolver for the given state; `numsync` is capped at the number of listed names.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        leader: &str,
        quorum: u32,
        voters: Names,
        numsync: u32,
        sync: Names,
        numsync_confirmed: u32,
        active: Names,
        sync_wanted: u32,
        leader_wanted: &str,
    ) -> QuorumResolver {
        QuorumResolver {
            leader: leader.to_string(),
            quorum,
            voters,
            numsync: numsync.min(n(sync.len())),
            sync,
            numsync_confirmed,
            active,
            sync_wanted,
            leader_wanted: leader_wanted.to_string(),
            out: Vec::new(),
        }
    }

    /// The invariant: a commit acknowledged by any `numsync` of `sync` is seen by any `quorum`
    /// voters (leader on both sides), and one set contains the other.
    pub fn check_invariants(&self) -> Result<(), QuorumError> {
        let voters = self.voters.or(&[self.leader.as_str()].into_iter().collect());
        let sync = self.sync.or(&[self.leader_wanted.as_str()].into_iter().collect());
        let all = voters.or(&sync).len() as u32;
        if !self.voters.is_empty() && all > self.quorum + self.numsync + 1 {
            return Err(QuorumError(format!(
                "Quorum and sync not guaranteed to overlap: nodes {all} >= quorum {} + sync {} + 1",
                self.quorum, self.numsync
            )));
        }
        if !(voters.is_subset(&sync) || sync.is_subset(&voters)) {
            return Err(QuorumError(format!(
                "Mismatched sets: voter only={} sync only={}",
                voters.minus(&sync),
                sync.minus(&voters)
            )));
        }
        Ok(())
    }

    /// Returns `true` when the caller must stop (a `Restart` was produced).
    fn quorum_update(
        &mut self,
        quorum: i64,
        voters: Names,
        leader: Option<&str>,
        adjust_quorum: bool,
    ) -> Result<bool, QuorumError> {
        let (mut quorum, mut voters) = (quorum, voters);
        if quorum < 0 {
            return Err(QuorumError(format!("Quorum {quorum} < 0 of ({voters})")));
        }
        if quorum > 0 && quorum >= voters.len() as i64 {
            return Err(QuorumError(format!("Quorum {quorum} >= N of ({voters})")));
        }
        let old_leader = self.leader.clone();
        if let Some(l) = leader {
            self.leader = l.to_string();
        } else if self.numsync_confirmed == 0 && self.voters.is_empty() {
            // Nobody is known to have caught up: keep /sync without voters.
            quorum = 0;
            voters = Names::new();
        } else if adjust_quorum {
            // Fewer confirmed than numsync: ask the race for more votes so a synchronous node is seen.
            quorum += i64::from(self.numsync.saturating_sub(self.numsync_confirmed));
        }
        let quorum = quorum as u32;
        if self.leader == old_leader && quorum == self.quorum && voters == self.voters {
            if !self.voters.is_empty() {
                return Ok(false);
            }
            self.out.push(Transition::Restart);
            return Ok(true);
        }
        self.quorum = quorum;
        self.voters = voters;
        self.check_invariants()?;
        self.out.push(Transition::Quorum {
            leader: self.leader.clone(),
            num: self.quorum,
            names: self.voters.clone(),
        });
        Ok(false)
    }

    fn sync_update(&mut self, numsync: i64, sync: Names) -> Result<(), QuorumError> {
        if numsync < 0 {
            return Err(QuorumError(format!("Sync {numsync} < 0 of ({sync})")));
        }
        if numsync > sync.len() as i64 {
            return Err(QuorumError(format!("Sync {numsync} > N of ({sync})")));
        }
        self.numsync = numsync as u32;
        self.sync = sync;
        self.check_invariants()?;
        self.out.push(Transition::Sync { num: self.numsync, names: self.sync.clone() });
        Ok(())
    }

    /// The transitions, consecutive ones of the same kind merged (skipping an intermediate state
    /// nobody observed is safe), ending at the first `Restart`.
    pub fn transitions(mut self) -> Result<Vec<Transition>, QuorumError> {
        self.generate()?;
        let all = std::mem::take(&mut self.out);
        let mut merged = Vec::new();
        for (i, t) in all.iter().enumerate() {
            let next_same =
                all.get(i + 1).is_some_and(|nx| std::mem::discriminant(nx) == std::mem::discriminant(t));
            if next_same {
                continue;
            }
            merged.push(t.clone());
            if *t == Transition::Restart {
                break;
            }
        }
        Ok(merged)
    }

    fn generate(&mut self) -> Result<(), QuorumError> {
        macro_rules! stop {
            ($e:expr) => {
                if $e? {
                    return Ok(());
                }
            };
        }
        if !self.leader_wanted.eq_ignore_ascii_case(&self.leader) {
            // Failover: the old leader becomes a voter, the new one leaves the voters.
            let mut voters = self.voters.clone();
            voters.remove(&self.leader_wanted);
            voters.insert(&self.leader.clone());
            if self.sync.is_empty() {
                let numsync = voters.len() as i64 - i64::from(self.quorum);
                self.sync_update(numsync, voters.clone())?;
            }
            let lw = self.leader_wanted.clone();
            stop!(self.quorum_update(i64::from(self.quorum), voters, Some(&lw), true));
            if self.sync.and(&self.active).is_empty() {
                // Right after promotion: give standbys a loop to reconnect before removing them.
                return Ok(());
            }
        } else if let Err(e) = self.check_invariants() {
            let _ = e;
            let sync = self.sync.clone();
            stop!(self.quorum_update(sync.len() as i64 - i64::from(self.numsync), sync, None, true));
        }
        if self.numsync_confirmed == 0 && !self.sync.and(&self.active).is_empty() {
            // After a restart or failover nothing is confirmed yet: derive it from the quorum.
            self.numsync_confirmed =
                n(self.sync.and(&self.active).len()).min(n(self.voters.len()).saturating_sub(self.quorum));
        }
        stop!(self.non_steady());
        stop!(self.remove_gone());
        stop!(self.add_new());
        stop!(self.replication_factor_change());
        Ok(())
    }

    fn non_steady(&mut self) -> Result<bool, QuorumError> {
        if self.sync.is_subset(&self.voters) && self.sync != self.voters {
            // Case 1: mid-change of voters. Drop dead voters that are not synced, sync live voters.
            let remove = self.voters.minus(&self.sync.or(&self.active));
            if !remove.is_empty() {
                let q = self.voters.len() as i64 - remove.len() as i64 - i64::from(self.numsync);
                let adjust = self.sync.minus(&self.active).is_empty();
                if self.quorum_update(q, self.voters.minus(&remove), None, adjust)? {
                    return Ok(true);
                }
            }
            let add = self.voters.and(&self.active).minus(&self.sync);
            if !add.is_empty() {
                self.sync_update(i64::from(self.numsync), self.sync.or(&add))?;
            }
        } else if self.voters.is_subset(&self.sync) && self.sync != self.voters {
            // Case 2: mid-change of the replication factor.
            let remove = self.sync.minus(&self.active);
            let sync = self.sync.minus(&remove);
            if !remove.is_empty()
                && !sync.is_empty()
                && (self.voters.is_empty() || !sync.and(&self.voters).is_empty())
            {
                let num = i64::from(self.numsync).min(self.sync.len() as i64 - remove.len() as i64);
                self.sync_update(num, sync)?;
            }
            let add = self.sync.minus(&self.voters).and(&self.active);
            if !add.is_empty() {
                let voters = self.voters.or(&add);
                let q = voters.len() as i64 - i64::from(self.numsync);
                if self.quorum_update(q, voters, None, true)? {
                    return Ok(true);
                }
            }
            let remove = self.sync.minus(&self.voters);
            if !remove.is_empty() {
                let num = i64::from(self.numsync).min(self.sync.len() as i64 - remove.len() as i64);
                self.sync_update(num, self.sync.minus(&remove))?;
            }
        }
        if self.voters != self.sync {
            return Err(QuorumError(format!(
                "voters [{}] and sync [{}] still differ",
                self.voters, self.sync
            )));
        }
        let margin = i64::from(self.quorum) + i64::from(self.numsync.min(self.numsync_confirmed))
            - self.voters.or(&self.sync).len() as i64;
        if margin > 0 {
            if self.numsync > self.sync_wanted {
                // Case 3: replication factor higher than needed.
                let num = i64::from(self.sync_wanted).max(self.voters.len() as i64 - i64::from(self.quorum));
                self.sync_update(num, self.sync.clone())?;
            } else {
                // Case 4: quorum higher than needed.
                let q = self.sync.len() as i64 - i64::from(self.numsync);
                return self.quorum_update(q, self.voters.clone(), None, true);
            }
        } else {
            let margin =
                i64::from(self.quorum) + i64::from(self.numsync) - self.voters.or(&self.sync).len() as i64;
            if self.numsync == self.sync_wanted && margin > 0 && self.numsync > self.numsync_confirmed {
                let q = self.sync.len() as i64 - i64::from(self.numsync);
                return self.quorum_update(q, self.voters.clone(), None, true);
            }
        }
        Ok(false)
    }

    fn remove_gone(&mut self) -> Result<bool, QuorumError> {
        let mut to_remove = self.sync.minus(&self.active);
        if to_remove.is_empty() {
            return Ok(false);
        }
        if self.sync == to_remove {
            if self.quorum_update(0, Names::new(), None, false)? {
                return Ok(true);
            }
            self.sync_update(0, Names::new())?;
            return Ok(false);
        }
        if self.quorum > 0 {
            // Lower the quorum first, removing the highest-sorted names (deterministic).
            let remove = to_remove.take_sorted(self.quorum as usize, true);
            let sync = self.sync.minus(&remove);
            let numsync = if self.sync_wanted > self.numsync { self.sync_wanted } else { self.numsync }
                .min(n(sync.len()));
            self.sync_update(i64::from(numsync), sync)?;
            let voters = self.voters.minus(&remove);
            to_remove = to_remove.and(&self.sync);
            let q = voters.len() as i64 - i64::from(self.numsync);
            if self.quorum_update(q, voters, None, to_remove.is_empty())? {
                return Ok(true);
            }
        }
        if !to_remove.is_empty() {
            if self.quorum != 0 {
                return Err(QuorumError(format!("quorum {} left while removing [{to_remove}]", self.quorum)));
            }
            let numsync = i64::from(self.numsync) - to_remove.len() as i64;
            let sync = self.sync.minus(&to_remove);
            let voters = self.voters.minus(&to_remove);
            let decrease = numsync - i64::from(self.sync_wanted).min(sync.len() as i64);
            let q = if decrease != 0 { decrease.min(voters.len() as i64 - 1) } else { 0 };
            if self.quorum_update(q, voters, None, false)? {
                return Ok(true);
            }
            self.sync_update(numsync, sync)?;
        }
        Ok(false)
    }

    fn add_new(&mut self) -> Result<bool, QuorumError> {
        let mut to_add = self.active.minus(&self.sync);
        if to_add.is_empty() {
            return Ok(false);
        }
        let sync_wanted = self.sync_wanted.min(n(self.sync.or(&to_add).len()));
        let increase = i64::from(sync_wanted) - i64::from(self.numsync);
        if increase > 0 {
            let add = if self.sync.is_empty() {
                // Only the leader so far: adding everybody at once is safe.
                to_add.clone()
            } else {
                to_add.take_sorted(increase as usize, false)
            };
            let inc = if self.sync.is_empty() { increase } else { add.len() as i64 };
            self.sync_update(i64::from(self.numsync) + inc, self.sync.or(&add))?;
            let voters = self.voters.or(&add);
            // Patroni subtracts `sync_wanted` here; when fewer nodes were added than the factor
            // asked for (a factor change pending at the same time) that breaks the invariant, so
            // subtract the numsync actually set; the factor change below lowers the quorum later.
            let q = voters.len() as i64 - i64::from(self.numsync);
            if self.quorum_update(q, voters, None, true)? {
                return Ok(true);
            }
            to_add = to_add.minus(&self.sync);
        }
        if !to_add.is_empty() {
            let voters = self.voters.or(&to_add);
            let q = voters.len() as i64 - i64::from(sync_wanted);
            if self.quorum_update(q, voters, None, sync_wanted > self.numsync_confirmed)? {
                return Ok(true);
            }
            self.sync_update(i64::from(sync_wanted), self.sync.or(&to_add))?;
        }
        Ok(false)
    }

    fn replication_factor_change(&mut self) -> Result<bool, QuorumError> {
        let increase = i64::from(self.sync_wanted).min(self.sync.len() as i64) - i64::from(self.numsync);
        if increase > 0 {
            self.sync_update(i64::from(self.numsync) + increase, self.sync.clone())?;
            let q = self.voters.len() as i64 - i64::from(self.numsync);
            return self.quorum_update(q, self.voters.clone(), None, true);
        }
        if increase < 0 {
            if i64::from(self.quorum) - increase < self.voters.len() as i64 {
                let q = self.voters.len() as i64 - i64::from(self.numsync) - increase;
                if self.quorum_update(
                    q,
                    self.voters.clone(),
                    None,
                    self.sync_wanted > self.numsync_confirmed,
                )? {
                    return Ok(true);
                }
            }
            self.sync_update(i64::from(self.numsync) + increase, self.sync.clone())?;
        }
        Ok(false)
    }
}

#[cfg(test)]
mod tests;
