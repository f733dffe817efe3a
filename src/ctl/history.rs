//! `history` and `show-config`: the `/history` and `/config` keys as patronictl prints them.

use super::output::{Format, print_output, yaml};
use crate::dcs::model::Cluster;
use serde_json::{Value, json};

/// `patronictl history`: columns `TL, LSN, Reason, Timestamp, New Leader`, one row per stored line,
/// missing trailing fields shown empty (`ctl.py history`).
pub fn history(cluster: &Cluster, fmt: Format) -> String {
    let columns: Vec<String> =
        ["TL", "LSN", "Reason", "Timestamp", "New Leader"].iter().map(|s| s.to_string()).collect();
    let rows = cluster
        .history
        .as_ref()
        .map(|h| h.lines.as_slice())
        .unwrap_or_default()
        .iter()
        .map(|l| {
            vec![
                json!(l.timeline),
                json!(l.lsn),
                json!(l.reason),
                json!(l.timestamp.clone().unwrap_or_default()),
                json!(l.new_leader.clone().unwrap_or_default()),
            ]
        })
        .collect();
    print_output(&columns, rows, &["TL", "LSN"], fmt, "")
}

/// `patronictl show-config`: the `/config` key as block YAML with sorted keys, followed by an empty
/// line; nothing when the key does not exist.
pub fn show_config(cluster: &Cluster) -> String {
    match &cluster.config {
        Some(c) => format!("{}\n", yaml(&Value::Object(c.data.clone()), false)),
        None => String::new(),
    }
}
