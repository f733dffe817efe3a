//! The REST API (Patroni's paths, status codes and bodies, PATRONI-COMPAT §3).
//!
//! Owns: HTTP mapping. Reads the status the HA task publishes; never runs SQL or DCS writes itself.

pub mod probe;
pub mod server;
pub mod status;
