//! Lenient deserializers that read YAML the way Patroni (PyYAML + `patroni/utils.py`) does:
//! `on/off/yes/no` booleans, numbers given as strings, a host list given as a comma string.

use serde::{Deserialize, Deserializer, de::Error};
use serde_yaml_ng::Value;

/// Patroni's `parse_bool`: true/on/yes/1/y and false/off/no/0/n, any case; YAML booleans and numbers.
pub fn parse_bool(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::Number(n) => n.as_i64().map(|i| i != 0),
        Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
            "true" | "on" | "yes" | "1" | "y" => Some(true),
            "false" | "off" | "no" | "0" | "n" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

/// A boolean read with [`parse_bool`].
pub fn bool<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    let v = Value::deserialize(d)?;
    parse_bool(&v).ok_or_else(|| {
        D::Error::custom(format!("expected a boolean (true/false, on/off, yes/no), got {}", show(&v)))
    })
}

/// An optional boolean read with [`parse_bool`]; `null` is `None`.
pub fn opt_bool<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    let v = Value::deserialize(d)?;
    if v.is_null() {
        return Ok(None);
    }
    parse_bool(&v).map(Some).ok_or_else(|| {
        D::Error::custom(format!("expected a boolean (true/false, on/off, yes/no), got {}", show(&v)))
    })
}

/// A string; numbers and booleans are accepted and turned into their text (`port: 5432` as a string).
pub fn string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let v = Value::deserialize(d)?;
    scalar_string(&v).ok_or_else(|| D::Error::custom(format!("expected a string, got {}", show(&v))))
}

/// An optional string (see [`string`]); `null` is `None`.
pub fn opt_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let v = Value::deserialize(d)?;
    if v.is_null() {
        return Ok(None);
    }
    scalar_string(&v)
        .map(Some)
        .ok_or_else(|| D::Error::custom(format!("expected a string, got {}", show(&v))))
}

/// A list of strings given as a YAML list or a comma-separated string (`hosts: a:2379,b:2379`).
pub fn string_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let v = Value::deserialize(d)?;
    match &v {
        Value::Null => Ok(Vec::new()),
        Value::Sequence(items) => items
            .iter()
            .map(|i| {
                scalar_string(i)
                    .ok_or_else(|| D::Error::custom(format!("expected a list of strings, found {}", show(i))))
            })
            .collect(),
        other => match scalar_string(other) {
            Some(s) => Ok(s.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect()),
            None => Err(D::Error::custom(format!(
                "expected a list or a comma-separated string, got {}",
                show(other)
            ))),
        },
    }
}

/// The text of a YAML scalar.
pub fn scalar_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Short description of a value for error messages.
pub fn show(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => format!("{b}"),
        Value::Number(n) => format!("{n}"),
        Value::String(s) => format!("{s:?}"),
        Value::Sequence(_) => "a list".into(),
        Value::Mapping(_) => "a mapping".into(),
        Value::Tagged(t) => format!("a value tagged {}", t.tag),
    }
}

/// Patroni's `parse_int` (`patroni/utils.py`): an integer, a float (rounded), a decimal/hex/octal
/// string, optionally followed by a unit (`B kB MB GB TB`, `us ms s min h d`) converted to
/// `base_unit`. A value with a unit but no `base_unit`, or an unknown unit, is `None`.
pub fn parse_int(v: &Value, base_unit: Option<&str>) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f.round() as i64)),
        Value::Bool(_) => None,
        Value::String(s) => parse_int_str(s, base_unit),
        _ => None,
    }
}

/// [`parse_int`] for text.
pub fn parse_int_str(s: &str, base_unit: Option<&str>) -> Option<i64> {
    let (val, unit) = split_number(s.trim())?;
    let unit = unit.trim();
    if unit.is_empty() {
        return Some(val.round() as i64);
    }
    convert_to_base_unit(val, unit, base_unit?).map(|v| v.round() as i64)
}

/// Leading number (decimal, `0x` hex, `0` octal, or float) and the rest of the text.
fn split_number(s: &str) -> Option<(f64, &str)> {
    let bytes = s.as_bytes();
    let mut i = 0;
    if i < bytes.len() && (bytes[i] == b'+' || bytes[i] == b'-') {
        i += 1;
    }
    let neg = s.starts_with('-');
    let digits = &s[i..];
    if digits.len() > 2 && (digits.starts_with("0x") || digits.starts_with("0X")) {
        let end = digits[2..].find(|c: char| !c.is_ascii_hexdigit()).map_or(digits.len(), |e| e + 2);
        if end > 2 {
            let n = i64::from_str_radix(&digits[2..end], 16).ok()? as f64;
            return Some((if neg { -n } else { n }, &digits[end..]));
        }
    }
    let int_end = digits.find(|c: char| !c.is_ascii_digit()).unwrap_or(digits.len());
    let rest = &digits[int_end..];
    if rest.starts_with('.') || rest.starts_with('e') || rest.starts_with('E') || int_end == 0 {
        // A float: digits [. digits] [e[+-]digits]
        let mut end = int_end;
        let b = digits.as_bytes();
        if end < b.len() && b[end] == b'.' {
            end += 1;
            while end < b.len() && b[end].is_ascii_digit() {
                end += 1;
            }
        }
        if end == 0 || (end == 1 && b[0] == b'.') {
            return None;
        }
        if end < b.len() && (b[end] == b'e' || b[end] == b'E') {
            let mut e = end + 1;
            if e < b.len() && (b[e] == b'+' || b[e] == b'-') {
                e += 1;
            }
            let start = e;
            while e < b.len() && b[e].is_ascii_digit() {
                e += 1;
            }
            if e > start {
                end = e;
            }
        }
        let n: f64 = digits[..end].parse().ok()?;
        return Some((if neg { -n } else { n }, &digits[end..]));
    }
    let text = &digits[..int_end];
    let n = if text.len() > 1 && text.starts_with('0') {
        i64::from_str_radix(&text[1..], 8).ok()? as f64
    } else {
        text.parse::<i64>().ok()? as f64
    };
    Some((if neg { -n } else { n }, rest))
}

/// Convert `value` in `unit` to `base_unit` (which may carry a multiplier, like `16MB`).
fn convert_to_base_unit(value: f64, unit: &str, base_unit: &str) -> Option<f64> {
    const MEMORY: [(&str, f64); 5] = [
        ("TB", 1024.0 * 1024.0 * 1024.0 * 1024.0),
        ("GB", 1024.0 * 1024.0 * 1024.0),
        ("MB", 1024.0 * 1024.0),
        ("kB", 1024.0),
        ("B", 1.0),
    ];
    const TIME: [(&str, f64); 6] = [
        ("d", 86_400_000_000.0),
        ("h", 3_600_000_000.0),
        ("min", 60_000_000.0),
        ("s", 1_000_000.0),
        ("ms", 1000.0),
        ("us", 1.0),
    ];
    let (mult, base) = match split_number(base_unit) {
        Some((m, rest)) => (m, rest.trim()),
        None => (1.0, base_unit.trim()),
    };
    // Patroni's base units: B, kB, MB for memory; ms, s, min for time.
    let table: &[(&str, f64)] = if ["B", "kB", "MB"].contains(&base) {
        &MEMORY
    } else if ["ms", "s", "min"].contains(&base) {
        &TIME
    } else {
        return None;
    };
    let from = table.iter().find(|(u, _)| *u == unit)?.1;
    let to = table.iter().find(|(u, _)| *u == base)?.1;
    Some(value * from / to / mult)
}

/// An optional integer read with [`parse_int`] (no units); `null` is `None`.
pub fn opt_int<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    let v = Value::deserialize(d)?;
    if v.is_null() {
        return Ok(None);
    }
    parse_int(&v, None)
        .map(Some)
        .ok_or_else(|| D::Error::custom(format!("expected an integer, got {}", show(&v))))
}

/// An optional number of seconds: an integer, or text with a time unit (`10s`, `5min`).
pub fn opt_secs<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    let v = Value::deserialize(d)?;
    if v.is_null() {
        return Ok(None);
    }
    parse_int(&v, Some("s")).map(Some).ok_or_else(|| {
        D::Error::custom(format!("expected a number of seconds (like 30 or \"30s\"), got {}", show(&v)))
    })
}

/// An optional secret string; numbers are accepted as their text (`password: 123456`).
pub fn opt_secret<'de, D: Deserializer<'de>>(d: D) -> Result<Option<crate::types::Secret<String>>, D::Error> {
    opt_string(d).map(|s| s.map(crate::types::Secret))
}

/// An optional list of strings (see [`string_list`]); `null` is `None`.
pub fn opt_string_list<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
    let v = Value::deserialize(d)?;
    if v.is_null() {
        return Ok(None);
    }
    string_list(v).map(Some).map_err(|e| D::Error::custom(e.to_string()))
}

/// A map of string to string; scalar values are turned into their text.
pub fn string_map<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<std::collections::BTreeMap<String, String>, D::Error> {
    let v = Value::deserialize(d)?;
    match &v {
        Value::Null => Ok(Default::default()),
        Value::Mapping(m) => m
            .iter()
            .map(|(k, val)| {
                let k = scalar_string(k)
                    .ok_or_else(|| D::Error::custom(format!("expected a text key, got {}", show(k))))?;
                let val = scalar_string(val).ok_or_else(|| {
                    D::Error::custom(format!("expected a text value for {k:?}, got {}", show(val)))
                })?;
                Ok((k, val))
            })
            .collect(),
        other => Err(D::Error::custom(format!("expected a mapping, got {}", show(other)))),
    }
}

#[cfg(test)]
mod parse_int_tests {
    use super::*;

    fn s(x: &str) -> Value {
        Value::String(x.into())
    }

    #[test]
    fn parse_int_matches_patroni_examples() {
        // utils.py: parse_int doctests
        assert_eq!(parse_int(&s("1"), None), Some(1));
        assert_eq!(parse_int(&s(" 0x400 MB "), Some("16384kB")), Some(64));
        assert_eq!(parse_int(&s("1MB"), Some("kB")), Some(1024));
        assert_eq!(parse_int(&s("1000 ms"), Some("s")), Some(1));
        assert_eq!(parse_int(&s("1TB"), Some("GB")), None);
        assert_eq!(parse_int(&s("51"), None), Some(51));
        assert_eq!(parse_int(&s("nonsense"), None), None);
        assert_eq!(parse_int(&s("nonsense"), Some("kB")), None);
        assert_eq!(parse_int(&s("6GB"), Some("16MB")), Some(384));
        assert_eq!(parse_int(&s("4097.4kB"), Some("kB")), Some(4097));
        assert_eq!(parse_int(&s("10s"), None), None);
        assert_eq!(parse_int(&s("10s"), Some("s")), Some(10));
        assert_eq!(parse_int(&s("5min"), Some("s")), Some(300));
        assert_eq!(parse_int(&s("010"), None), Some(8));
        assert_eq!(parse_int(&s("-1"), None), Some(-1));
        assert_eq!(parse_int(&Value::Bool(true), None), None);
    }
}
