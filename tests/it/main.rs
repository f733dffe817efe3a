//! praetor's integration tests: one binary, a module per area.
#[cfg(feature = "consul")]
mod consul; // Consul backend against the Consul API model, Patroni 4.1.5 cross-check
mod dcs_contract;
mod support;
