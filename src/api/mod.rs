//! The REST API (Patroni's paths, status codes and bodies, PATRONI-COMPAT §3).
//!
//! Owns: HTTP mapping. Reads the status the HA task publishes; never runs SQL or DCS writes itself.

pub mod auth;
pub mod control;
pub mod extract;
pub mod metrics;
pub mod probe;
#[cfg(test)]
mod probe_table;
pub mod server;
pub mod status;
pub mod tls;
pub mod views;
