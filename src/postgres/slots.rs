//! Replication slots on the primary (PATRONI-COMPAT §6.12): a physical slot per member (named by
//! [`crate::types::slot_name_from_member_name`]), permanent slots from `slots:`, slots of absent
//! members kept for `member_slots_ttl`, slots matching `ignore_slots` never touched.
//!
//! [`plan`] is pure: the caller passes who is present, who is gone and for how long, and the slots
//! that exist; it answers which slots to create and drop. [`apply`] executes a plan over SQL.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use tokio_postgres::Client;
use tracing::{info, warn};

use crate::types::slot_name_from_member_name;

/// Slot type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SlotType {
    /// Physical (streaming replication).
    Physical,
    /// Logical decoding.
    Logical,
}

impl SlotType {
    /// Parse `physical`/`logical` (case-insensitive).
    pub fn parse(s: &str) -> Option<SlotType> {
        match s.to_ascii_lowercase().as_str() {
            "physical" => Some(SlotType::Physical),
            "logical" => Some(SlotType::Logical),
            _ => None,
        }
    }
}

/// A slot that should exist (member or permanent).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlotSpec {
    /// Slot name.
    pub name: String,
    /// Type.
    pub slot_type: SlotType,
    /// Database (logical only).
    pub database: Option<String>,
    /// Output plugin (logical only).
    pub plugin: Option<String>,
}

impl SlotSpec {
    /// A physical slot.
    pub fn physical(name: &str) -> SlotSpec {
        SlotSpec { name: name.to_string(), slot_type: SlotType::Physical, database: None, plugin: None }
    }
}

/// A slot as found in `pg_replication_slots`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExistingSlot {
    /// Slot description.
    pub spec: SlotSpec,
    /// PID of the walsender using it.
    pub active_pid: Option<i32>,
}

/// An `ignore_slots` matcher: every field that is set must match.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IgnoreSlot {
    /// `name`.
    pub name: Option<String>,
    /// `type`.
    pub slot_type: Option<SlotType>,
    /// `database`.
    pub database: Option<String>,
    /// `plugin`.
    pub plugin: Option<String>,
}

impl IgnoreSlot {
    /// `true` when `s` matches this matcher.
    pub fn matches(&self, s: &SlotSpec) -> bool {
        self.name.as_ref().is_none_or(|n| *n == s.name)
            && self.slot_type.is_none_or(|t| t == s.slot_type)
            && self.database.as_ref().is_none_or(|d| Some(d) == s.database.as_ref())
            && self.plugin.as_ref().is_none_or(|p| Some(p) == s.plugin.as_ref())
    }
}

/// Inputs of [`plan`].
#[derive(Clone, Debug, Default)]
pub struct SlotInputs {
    /// This member's name (no slot for ourselves).
    pub me: String,
    /// `use_slots`.
    pub use_slots: bool,
    /// Members currently registered.
    pub present_members: Vec<String>,
    /// Members no longer registered and how long they have been gone.
    pub absent_members: Vec<(String, Duration)>,
    /// `member_slots_ttl`.
    pub member_slots_ttl: Duration,
    /// Permanent slots (`slots:`).
    pub permanent: Vec<SlotSpec>,
    /// `ignore_slots`.
    pub ignore: Vec<IgnoreSlot>,
    /// Slots that exist now.
    pub existing: Vec<ExistingSlot>,
}

/// What to change.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SlotPlan {
    /// Slots to create.
    pub create: Vec<SlotSpec>,
    /// Slots to drop (by name), with the walsender PID to terminate first when active.
    pub drop: Vec<(String, Option<i32>)>,
}

/// The leader's memory of member slots (Patroni `_build_retain_slots`, `member_slots_ttl`): when
/// each slot name was last seen as a member, so that the slot of a member whose key expired (it
/// was cut off, or is down for maintenance) is kept for `member_slots_ttl` and the member can
/// stream again from where it stopped. Published as `retain_slots` in `/status`, from which the
/// next leader starts its own memory. Pure: the caller gives every instant.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SlotRetention {
    last_seen: BTreeMap<String, Instant>,
    seeded: bool,
}

/// One cycle of [`SlotRetention::observe`]: what to publish and what to keep.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Retained {
    /// `retain_slots` for `/status`, sorted.
    pub retain_slots: Vec<String>,
    /// Slot names of absent members and how long ago they were last seen (for [`SlotInputs`]).
    pub absent: Vec<(String, Duration)>,
    /// Names that expired in this cycle.
    pub expired: Vec<String>,
}

impl SlotRetention {
    /// A leader's cycle at `now`: the first one of a term counts every name of the DCS's
    /// `retain_slots` as seen now (Patroni resets the retention when it takes the lock); every
    /// present member's slot name (including this node's) is seen now; names not seen for
    /// `ttl` are forgotten.
    pub fn observe(
        &mut self,
        now: Instant,
        present: &[String],
        dcs_retain: &[String],
        ttl: Duration,
    ) -> Retained {
        if !self.seeded {
            self.seeded = true;
            for n in dcs_retain {
                self.last_seen.insert(slot_name_from_member_name(n), now);
            }
        }
        let present: BTreeSet<String> = present.iter().map(|m| slot_name_from_member_name(m)).collect();
        for n in &present {
            self.last_seen.insert(n.clone(), now);
        }
        let mut out = Retained::default();
        self.last_seen.retain(|n, seen| {
            let gone = now.saturating_duration_since(*seen);
            if gone >= ttl {
                out.expired.push(n.clone());
                return false;
            }
            if !present.contains(n) {
                out.absent.push((n.clone(), gone));
            }
            true
        });
        out.retain_slots = self.last_seen.keys().cloned().collect();
        out
    }

    /// Not the leader (any more): the next term starts again from the DCS.
    pub fn reset(&mut self) {
        *self = SlotRetention::default();
    }
}

/// Slots that should exist: member slots (present members, and absent ones gone less than
/// `member_slots_ttl`) and permanent slots (logical ones only with database and plugin).
pub fn desired(inp: &SlotInputs) -> Vec<SlotSpec> {
    if !inp.use_slots {
        return Vec::new();
    }
    let my_slot = slot_name_from_member_name(&inp.me);
    let mut names = BTreeSet::new();
    let mut out = Vec::new();
    let retained = inp.absent_members.iter().filter(|(_, gone)| *gone < inp.member_slots_ttl).map(|(m, _)| m);
    for m in inp.present_members.iter().chain(retained) {
        let name = slot_name_from_member_name(m);
        if name != my_slot && names.insert(name.clone()) {
            out.push(SlotSpec::physical(&name));
        }
    }
    for p in &inp.permanent {
        if p.name == my_slot || names.contains(&p.name) {
            continue;
        }
        if p.slot_type == SlotType::Logical && (p.database.is_none() || p.plugin.is_none()) {
            warn!(slot = %p.name, "permanent logical slot needs database and plugin; skipped");
            continue;
        }
        names.insert(p.name.clone());
        out.push(p.clone());
    }
    out
}

fn same_kind(a: &SlotSpec, b: &SlotSpec) -> bool {
    a.slot_type == b.slot_type
        && (a.slot_type == SlotType::Physical || (a.database == b.database && a.plugin == b.plugin))
}

/// Which slots to create and drop. Slots matching `ignore_slots` are never dropped; a slot whose
/// type, database or plugin differs from the desired one is dropped and created again.
pub fn plan(inp: &SlotInputs) -> SlotPlan {
    let want = desired(inp);
    let mut p = SlotPlan::default();
    for ex in &inp.existing {
        if inp.ignore.iter().any(|i| i.matches(&ex.spec)) {
            continue;
        }
        match want.iter().find(|w| w.name == ex.spec.name) {
            Some(w) if same_kind(w, &ex.spec) => {}
            _ => p.drop.push((ex.spec.name.clone(), ex.active_pid)),
        }
    }
    for w in want {
        let ok = inp.existing.iter().any(|e| {
            e.spec.name == w.name && (same_kind(&w, &e.spec) || inp.ignore.iter().any(|i| i.matches(&e.spec)))
        });
        if !ok {
            p.create.push(w);
        }
    }
    p
}

/// Read `pg_replication_slots`.
pub async fn existing(client: &Client) -> Result<Vec<ExistingSlot>, tokio_postgres::Error> {
    let rows = client
        .query(
            "SELECT slot_name::text, slot_type, database::text, plugin::text, active_pid \
             FROM pg_catalog.pg_replication_slots WHERE NOT temporary ORDER BY slot_name",
            &[],
        )
        .await?;
    rows.into_iter()
        .map(|r| {
            let ty: String = r.try_get(1)?;
            Ok(ExistingSlot {
                spec: SlotSpec {
                    name: r.try_get(0)?,
                    slot_type: SlotType::parse(&ty).unwrap_or(SlotType::Physical),
                    database: r.try_get(2)?,
                    plugin: r.try_get(3)?,
                },
                active_pid: r.try_get(4)?,
            })
        })
        .collect()
}

/// Execute `plan`: terminate walsenders of active slots to drop, drop, then create (physical slots
/// reserve WAL immediately). Logical slots are created through `logical_client(database)`.
pub async fn apply(client: &Client, plan: &SlotPlan) -> Result<(), tokio_postgres::Error> {
    for (name, pid) in &plan.drop {
        if let Some(pid) = pid {
            client.execute("SELECT pg_catalog.pg_terminate_backend($1)", &[pid]).await?;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        info!(slot = %name, "dropping replication slot");
        client
            .execute(
                "SELECT pg_catalog.pg_drop_replication_slot(slot_name) FROM pg_catalog.pg_replication_slots \
                 WHERE slot_name = $1 AND NOT active",
                &[name],
            )
            .await?;
    }
    for s in &plan.create {
        info!(slot = %s.name, kind = ?s.slot_type, "creating replication slot");
        match s.slot_type {
            SlotType::Physical => {
                client
                    .execute(
                        "SELECT pg_catalog.pg_create_physical_replication_slot($1, true) \
                         WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_replication_slots WHERE slot_name = $1)",
                        &[&s.name],
                    )
                    .await?;
            }
            SlotType::Logical => {
                // Logical slots are created in their database; the caller connects there.
                client
                    .execute(
                        "SELECT pg_catalog.pg_create_logical_replication_slot($1, $2) \
                         WHERE pg_catalog.current_database() = $3 AND NOT EXISTS \
                         (SELECT 1 FROM pg_catalog.pg_replication_slots WHERE slot_name = $1)",
                        &[
                            &s.name,
                            &s.plugin.clone().unwrap_or_default(),
                            &s.database.clone().unwrap_or_default(),
                        ],
                    )
                    .await?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ex(name: &str) -> ExistingSlot {
        ExistingSlot { spec: SlotSpec::physical(name), active_pid: None }
    }

    fn inputs() -> SlotInputs {
        SlotInputs {
            me: "pg-1".into(),
            use_slots: true,
            present_members: vec!["pg-1".into(), "pg-2".into(), "Pg.3".into()],
            absent_members: vec![
                ("pg-4".into(), Duration::from_secs(100)),
                ("pg-5".into(), Duration::from_secs(4000)),
            ],
            member_slots_ttl: Duration::from_secs(1800),
            ..Default::default()
        }
    }

    #[test]
    fn member_slots_are_created_for_others_and_retained_within_ttl() {
        // dcs/__init__.py: _build_retain_slots, slot_name_from_member_name
        let mut inp = inputs();
        inp.existing = vec![ex("pg_2"), ex("pg_4"), ex("pg_5")];
        let p = plan(&inp);
        assert_eq!(p.create, vec![SlotSpec::physical("pg_3")]);
        assert_eq!(p.drop, vec![("pg_5".to_string(), None)]);
    }

    /// Patroni `_build_retain_slots`: the slot of a member whose key is gone stays in
    /// `retain_slots` (and on the leader) for `member_slots_ttl`; a new leader starts from the
    /// `retain_slots` it reads in `/status`.
    #[test]
    fn absent_member_slot_is_retained_for_member_slots_ttl() {
        let ttl = Duration::from_secs(1800);
        let t0 = Instant::now();
        let mut r = SlotRetention::default();
        let first = r.observe(t0, &["pg0".into(), "pg1".into(), "Pg-2".into()], &["pg3".into()], ttl);
        assert_eq!(first.retain_slots, vec!["pg0", "pg1", "pg3", "pg_2"]);
        assert_eq!(first.absent, vec![("pg3".to_string(), Duration::ZERO)]);
        // pg-2's key expired (cut off): its slot is kept, and absent for as long as it is gone.
        let later = r.observe(t0 + Duration::from_secs(60), &["pg0".into(), "pg1".into()], &[], ttl);
        assert_eq!(later.retain_slots, vec!["pg0", "pg1", "pg3", "pg_2"]);
        assert!(later.absent.contains(&("pg_2".to_string(), Duration::from_secs(60))));
        // The DCS list seeds only the first cycle of a term.
        let again = r.observe(t0 + Duration::from_secs(61), &["pg0".into()], &["pg9".into()], ttl);
        assert!(!again.retain_slots.contains(&"pg9".to_string()));
        // member_slots_ttl after a name was last seen, it is forgotten (pg1 was seen at +60 s).
        let gone = r.observe(t0 + ttl + Duration::from_secs(1), &["pg0".into()], &[], ttl);
        assert_eq!(gone.retain_slots, vec!["pg0", "pg1"]);
        assert_eq!(gone.expired, vec!["pg3", "pg_2"]);
        let gone = r.observe(t0 + ttl + Duration::from_secs(60), &["pg0".into()], &[], ttl);
        assert_eq!(gone.retain_slots, vec!["pg0"]);
        assert_eq!(gone.expired, vec!["pg1"]);
        // A new term starts from the DCS again.
        r.reset();
        let next = r.observe(t0, &["pg0".into()], &["pg1".into()], ttl);
        assert_eq!(next.retain_slots, vec!["pg0", "pg1"]);
    }

    #[test]
    fn permanent_and_ignored_slots() {
        let mut inp = inputs();
        inp.absent_members.clear();
        inp.permanent = vec![
            SlotSpec::physical("archiver"),
            SlotSpec {
                name: "cdc".into(),
                slot_type: SlotType::Logical,
                database: Some("app".into()),
                plugin: Some("pgoutput".into()),
            },
            SlotSpec { name: "broken".into(), slot_type: SlotType::Logical, database: None, plugin: None },
            SlotSpec::physical("pg_1"),
        ];
        inp.ignore = vec![IgnoreSlot { name: Some("external".into()), ..Default::default() }];
        inp.existing = vec![
            ex("pg_2"),
            ex("pg_3"),
            ex("external"),
            ex("stale"),
            ExistingSlot { spec: SlotSpec::physical("cdc"), active_pid: Some(77) },
        ];
        let p = plan(&inp);
        let created: Vec<&str> = p.create.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(created, vec!["archiver", "cdc"]);
        assert_eq!(p.drop, vec![("stale".to_string(), None), ("cdc".to_string(), Some(77))]);
    }

    #[test]
    fn without_use_slots_everything_not_ignored_goes() {
        let mut inp = inputs();
        inp.use_slots = false;
        inp.existing = vec![ex("pg_2")];
        inp.ignore = vec![IgnoreSlot { slot_type: Some(SlotType::Logical), ..Default::default() }];
        let p = plan(&inp);
        assert!(p.create.is_empty());
        assert_eq!(p.drop, vec![("pg_2".to_string(), None)]);
    }
}
