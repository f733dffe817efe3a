//! praetor's integration tests: one binary, a module per area.
mod dcs_contract;
mod support;
