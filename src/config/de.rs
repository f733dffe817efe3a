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
