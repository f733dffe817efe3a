//! Domain newtypes shared by every module: [`Lsn`], [`Role`], [`Secret`].
//!
//! Owns: value types with Patroni's wire spelling. Must not use anything else in the crate.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;

/// A PostgreSQL write-ahead-log position in bytes. Displays as PostgreSQL does (`0/16B3748`);
/// Patroni stores it in the DCS as a plain integer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Lsn(pub u64);

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xFFFF_FFFF)
    }
}

/// Error for a string that is not an `X/Y` LSN.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid LSN {0:?}: expected two hexadecimal numbers separated by '/', like 0/16B3748")]
pub struct LsnParseError(pub String);

impl FromStr for Lsn {
    type Err = LsnParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || LsnParseError(s.to_string());
        let (hi, lo) = s.trim().split_once('/').ok_or_else(err)?;
        let hi = u32::from_str_radix(hi, 16).map_err(|_| err())?;
        let lo = u32::from_str_radix(lo, 16).map_err(|_| err())?;
        Ok(Lsn((u64::from(hi) << 32) | u64::from(lo)))
    }
}

/// The role a member publishes in its member key and in `GET /patroni`.
///
/// Serialized with Patroni 4 names; the pre-4.0 `master` is read as [`Role::Primary`]. An unknown
/// string (a newer Patroni, a typo by another tool) is kept as [`Role::Other`] instead of failing.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Default)]
pub enum Role {
    /// A read-write primary.
    Primary,
    /// A streaming or archive-recovering replica.
    Replica,
    /// The leader of a standby cluster.
    StandbyLeader,
    /// A former primary that stepped down and has not yet restarted as a replica.
    Demoted,
    /// A node that has not been bootstrapped yet.
    #[default]
    Uninitialized,
    /// A replica in the middle of promotion.
    Promoted,
    /// Any other value, kept verbatim.
    Other(String),
}

impl Role {
    /// The wire spelling.
    pub fn as_str(&self) -> &str {
        match self {
            Role::Primary => "primary",
            Role::Replica => "replica",
            Role::StandbyLeader => "standby_leader",
            Role::Demoted => "demoted",
            Role::Uninitialized => "uninitialized",
            Role::Promoted => "promoted",
            Role::Other(s) => s,
        }
    }

    /// Parse a wire spelling; never fails.
    pub fn parse(s: &str) -> Role {
        match s {
            "primary" | "master" => Role::Primary,
            "replica" => Role::Replica,
            "standby_leader" | "standby-leader" => Role::StandbyLeader,
            "demoted" => Role::Demoted,
            "uninitialized" => Role::Uninitialized,
            "promoted" => Role::Promoted,
            other => Role::Other(other.to_string()),
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Role {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Role {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = serde_json::Value::deserialize(d)?;
        Ok(match v {
            serde_json::Value::String(s) => Role::parse(&s),
            other => Role::Other(other.to_string()),
        })
    }
}

/// A value that must not appear in logs. `Debug` and `Display` print `<redacted>`.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret<T>(pub T);

impl<T> Secret<T> {
    /// The secret value itself.
    pub fn expose(&self) -> &T {
        &self.0
    }
}

impl<T> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl<T> fmt::Display for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// The Patroni version whose behaviour praetor implements. Published as `version` in member keys
/// and `patroni.version` in `GET /patroni`, because Patroni peers and patronictl compare it against
/// feature thresholds (PATRONI-COMPAT §7).
pub const PATRONI_COMPAT_VERSION: &str = "4.1.5";

/// praetor's own version.
pub const PRAETOR_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Turn a member name into a physical replication slot name as Patroni does
/// (`dcs/__init__.py slot_name_from_member_name`): lower case, `-` and `.` become `_`, any other
/// character outside `[a-z0-9_]` becomes `u` + its code point in four or more decimal digits, cut to 63.
pub fn slot_name_from_member_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.to_lowercase().chars() {
        match c {
            'a'..='z' | '0'..='9' | '_' => out.push(c),
            '-' | '.' => out.push('_'),
            other => out.push_str(&format!("u{:04}", other as u32)),
        }
    }
    out.chars().take(63).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lsn_displays_and_parses_like_postgres() {
        let l: Lsn = "0/16B3748".parse().unwrap();
        assert_eq!(l, Lsn(0x16B3748));
        assert_eq!(l.to_string(), "0/16B3748");
        assert_eq!(Lsn(0x1_0000_0010).to_string(), "1/10");
        assert!("16B3748".parse::<Lsn>().is_err());
        assert!("x/1".parse::<Lsn>().is_err());
    }

    #[test]
    fn role_reads_legacy_master_and_keeps_unknown_values() {
        let r: Role = serde_json::from_str("\"master\"").unwrap();
        assert_eq!(r, Role::Primary);
        assert_eq!(serde_json::to_string(&r).unwrap(), "\"primary\"");
        let r: Role = serde_json::from_str("\"leader-ish\"").unwrap();
        assert_eq!(r, Role::Other("leader-ish".into()));
        let r: Role = serde_json::from_str("7").unwrap();
        assert_eq!(r, Role::Other("7".into()));
    }

    #[test]
    fn secret_is_redacted_in_debug() {
        let s = Secret("hunter2".to_string());
        assert_eq!(format!("{s:?} {s}"), "<redacted> <redacted>");
    }

    #[test]
    fn slot_names_follow_patroni_rules() {
        // dcs/__init__.py: slot_name_from_member_name
        assert_eq!(slot_name_from_member_name("Node-1.dc"), "node_1_dc");
        assert_eq!(slot_name_from_member_name("a b"), "au0032b");
        assert_eq!(slot_name_from_member_name(&"x".repeat(80)).len(), 63);
    }
}
