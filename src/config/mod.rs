//! Configuration: the Patroni YAML shape, environment overrides, validation.
//!
//! Owns: parsing and validation. Must not use `dcs`, `postgres`, `ha` or `api`. YAML parsing stays in
//! this module so replacing the YAML crate touches nothing else.

pub mod dcs;
pub mod de;
