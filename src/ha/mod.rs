//! High availability: the policy that decides, each `loop_wait`, whether this node leads, follows,
//! promotes, demotes, bootstraps or waits (PATRONI-COMPAT §6).
//!
//! The cycle is `observe → decide → act` (STYLE.md §3.1): the loop (written separately) gathers a
//! [`snapshot::Snapshot`], calls the pure [`decide::decide`], performs the requested
//! [`action::Step`]s and [`action::Action`]s, and logs [`action::Decision::log_line`].
//!
//! - `snapshot`: the policy's inputs as plain values (no `crate::postgres`/`crate::config` types).
//! - `decide`: Patroni's `_run_cycle`, pure; [`decide::Memory`] carries state between cycles.
//! - `failover`: leader race, candidate health and `/failover` key rules, pure.
//! - `fence`: praetor's partition rules (fence an isolated primary, strict-sync handover), pure.
//! - `action`: steps, actions and reasons (Patroni's log wording).
//!
//! Nothing in this module may use the runtime or read a clock: a test and CI grep for it.
//!
//! # Contract for the loop
//! One cycle:
//! 1. Read the cluster (`Dcs::load_cluster`; an error after `retry_timeout` becomes
//!    `Err(DcsUnavailable)`), observe PostgreSQL into a [`snapshot::PgState`], build the
//!    [`snapshot::DynamicPolicy`] and [`snapshot::Timing`] from the effective `/config`, take the
//!    monotonic and wall-clock time once, and collect the long action in flight and the long actions
//!    that finished since the last cycle.
//! 2. Start with empty [`snapshot::StepResults`] and call `decide`. While the decision carries a
//!    [`action::Step`], perform it (each kind at most once per cycle: peer `GET /patroni` calls in
//!    parallel with a 2 s timeout, `POST /failsafe`, the rewind check, or one DCS write), store the
//!    result and call `decide` again with the same snapshot. Peers are fetched only when the policy
//!    asks: that keeps HTTP traffic to the cycles that need it (leader race, switchover, start
//!    timeout) and lets the policy name exactly whom to ask.
//! 3. Execute `actions` in order; stop at the first executor error (log it; the next cycle
//!    re-observes). Long actions (bootstrap, clone, promote, graceful demote, start after failure,
//!    crash recovery, rewind, reinitialize, restart with new `primary_conninfo`) start a tracked task
//!    and return at once; the loop keeps cycling and reports them through `in_flight`/`finished`.
//!    A `Demote` or `CancelLongAction` cancels a running task first.
//! 4. Log `notes` then the reason (`log_line`), keep `next` as the memory, and sleep `loop_wait`
//!    (or `wake_after` if shorter; a non-leader wakes early on a leader-key watch event).
//! 5. Whatever happened (except a failed DCS read), `touch_member` with the member JSON of
//!    PATRONI-COMPAT §2.3: touching the member key is not an action.
//!
//! Executors must also: keep the watchdog alive after every successful `UpdateLock`/`TakeLock`;
//! activate it before `Promote` unless paused; set the role to `demoted` before a graceful demotion
//! releases the key; publish `Memory::leader_until` as "I am the leader" to the REST API; fire
//! `on_start` when `Memory::cb_called` becomes true and `on_role_change` on `SetRole`/promote/demote.

pub mod action;
pub mod command;
pub mod decide;
mod exec;
pub mod failover;
pub mod fence;
mod fence_exec;
pub mod manual;
pub mod runner;
pub mod snapshot;
pub mod sync;
mod sync_exec;

#[cfg(test)]
mod scenarios;
