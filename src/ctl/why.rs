//! `why [MEMBER…]` (praetor only): each member's last HA decision and the reason for it, from the
//! `praetor_ha` field of `GET /patroni`. Patroni nodes do not publish it; they are shown as such.

use super::rest::RestClient;
use super::table::{self, Align};
use crate::dcs::model::Cluster;
use reqwest::Method;
use serde_json::Value;

/// One member's row: name, role, state, decision, actions, time.
pub fn row(name: &str, status: Result<&Value, &str>) -> Vec<String> {
    let text = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    match status {
        Err(e) => vec![
            name.into(),
            String::new(),
            String::new(),
            format!("unreachable: {e}"),
            String::new(),
            String::new(),
        ],
        Ok(v) => {
            let (decision, actions, at) = match v.get("praetor_ha") {
                Some(h) => (
                    text(h, "decision"),
                    h.get("actions")
                        .and_then(Value::as_array)
                        .map(|a| a.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(", "))
                        .unwrap_or_default(),
                    text(h, "at"),
                ),
                None => (
                    format!(
                        "(not reported: Patroni {} does not publish its decisions; see its log)",
                        v.pointer("/patroni/version").and_then(Value::as_str).unwrap_or("?")
                    ),
                    String::new(),
                    String::new(),
                ),
            };
            vec![name.into(), text(v, "role"), text(v, "state"), decision, actions, at]
        }
    }
}

/// Ask every member (or those in `names`) and render the table.
pub async fn why(cluster: &Cluster, cluster_name: &str, names: &[String], rest: &RestClient) -> String {
    let mut rows = Vec::new();
    for m in &cluster.members {
        if !names.is_empty() && !names.contains(&m.name) {
            continue;
        }
        let reply = if m.data.api_url.is_empty() {
            Err("no api_url".to_string())
        } else {
            rest.request(m, Method::GET, Some("patroni"), None).await.and_then(|r| {
                serde_json::from_str::<Value>(&r.body).map_err(|e| format!("invalid status JSON: {e}"))
            })
        };
        rows.push(row(&m.name, reply.as_ref().map_err(String::as_str)));
    }
    let columns: Vec<String> = ["Member", "Role", "State", "Last HA decision", "Actions", "At"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let aligns = vec![Align::Left; columns.len()];
    format!("{}\n", table::render(&format!(" Cluster: {cluster_name} "), &columns, &aligns, &rows))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rows_show_the_decision_or_say_why_not() {
        let v = json!({"role": "replica", "state": "running",
            "praetor_ha": {"decision": "no action. I am (pg1), a secondary, and following a leader (pg0)",
                           "actions": ["Follow(pg0)"], "at": "2026-12-06T23:00:00Z"}});
        assert_eq!(
            row("pg1", Ok(&v)),
            [
                "pg1",
                "replica",
                "running",
                "no action. I am (pg1), a secondary, and following a leader (pg0)",
                "Follow(pg0)",
                "2026-12-06T23:00:00Z"
            ]
        );
        let p = json!({"role": "primary", "state": "running", "patroni": {"version": "4.1.5"}});
        assert!(row("p", Ok(&p))[3].contains("Patroni 4.1.5"));
        assert!(row("x", Err("connection refused"))[3].contains("connection refused"));
    }
}
