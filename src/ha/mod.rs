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
//! - `action`: steps, actions and reasons (Patroni's log wording).
//!
//! Nothing in this module may use the runtime or read a clock: a test and CI grep for it.

pub mod action;
pub mod decide;
pub mod failover;
pub mod snapshot;

#[cfg(test)]
mod scenarios;
