//! praetor: a high-availability agent for PostgreSQL, wire compatible with Patroni.
//!
//! One `praetor` process runs beside each PostgreSQL server. The agents elect a leader through a
//! distributed configuration store (etcd v3, Consul, ZooKeeper, or a loadable plugin), keep the keys
//! in exactly the layout Patroni writes, and expose Patroni's REST API.
//!
//! ```text
//!   config ──► agent (composition root) ──► HA task: observe ─► decide (pure) ─► act
//!                                              │ reads/writes            │
//!                                              ▼                         ▼
//!                                         dyn Dcs (etcd/consul/zk)   postgres controller
//! ```
//!
//! Module dependency rules (STYLE.md §2): `types` uses nothing; `config` uses `types`; `dcs` uses
//! `types` and `config`'s DCS sections; nothing in `dcs` touches `postgres`.

pub mod agent;
pub mod api;
pub mod callbacks;
pub mod cli;
pub mod config;
pub mod ctl;
pub mod dcs;
pub mod ha;
pub mod metrics;
pub mod postgres;
pub mod telemetry;
pub mod types;
pub mod watchdog;
