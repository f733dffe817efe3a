//! `edit-config`: change the cluster's `/config` key with a compare-and-set on its version, as
//! patronictl does (not through the REST API): `-s k=v` (dotted paths; `null` removes),
//! `-p k=v` (`postgresql.parameters`), `--apply FILE|-` (merged with Patroni's `patch_config`),
//! `--replace FILE|-`, or `$EDITOR`; shows a unified diff and asks before writing.

use super::output::yaml;
use super::prompt::confirm;
use super::{CtlError, echo};
use crate::dcs::Dcs;
use serde_json::{Map, Value};
use std::io::Read;
use std::sync::Arc;

fn failed(s: impl Into<String>) -> CtlError {
    CtlError::Failed(s.into())
}

/// `format_config_for_editing`.
pub fn format_config(data: &Map<String, Value>) -> String {
    yaml(&Value::Object(data.clone()), false)
}

/// YAML text (as `yaml.safe_load`) to JSON; an empty document is `null`.
pub fn yaml_to_json(text: &str) -> Result<Value, String> {
    if text.trim().is_empty() {
        return Ok(Value::Null);
    }
    let v: serde_yaml_ng::Value = serde_yaml_ng::from_str(text).map_err(|e| e.to_string())?;
    serde_json::to_value(v).map_err(|e| e.to_string())
}

/// PyYAML (YAML 1.1) reads `yes`/`no`/`on`/`off` as booleans; serde_yaml (1.2) does not.
fn yaml11_bool(s: &str) -> Option<bool> {
    match s.trim() {
        "yes" | "Yes" | "YES" | "on" | "On" | "ON" => Some(true),
        "no" | "No" | "NO" | "off" | "Off" | "OFF" => Some(false),
        _ => None,
    }
}

/// `set_path_value`: set (or with `null` remove) a dotted path; below `postgresql.parameters` the
/// rest of the path is one parameter name (dots included). Emptied mappings are removed.
fn set_path_value(config: &mut Map<String, Value>, path: &[&str], value: &Value, prefix: &[&str]) {
    let joined;
    let path: Vec<&str> = if prefix == ["postgresql", "parameters"] {
        joined = path.join(".");
        vec![joined.as_str()]
    } else {
        path.to_vec()
    };
    let key = path[0];
    if path.len() == 1 {
        if value.is_null() {
            config.remove(key);
        } else {
            config.insert(key.to_string(), value.clone());
        }
        return;
    }
    if !config.get(key).is_some_and(Value::is_object) {
        config.insert(key.to_string(), Value::Object(Map::new()));
    }
    let mut pre = prefix.to_vec();
    pre.push(key);
    if let Some(Value::Object(child)) = config.get_mut(key) {
        set_path_value(child, &path[1..], value, &pre);
        if child.is_empty() {
            config.remove(key);
        }
    }
}

/// `apply_config_changes`: apply `key.path=yaml-value` pairs.
pub fn apply_config_changes(
    data: &Map<String, Value>,
    kvpairs: &[String],
) -> Result<Map<String, Value>, CtlError> {
    let mut changed = data.clone();
    for pair in kvpairs {
        let Some((key_path, value)) = pair.split_once('=').filter(|_| !pair.is_empty()) else {
            return Err(failed(format!("Invalid parameter setting {pair}")));
        };
        let value = yaml11_bool(value)
            .map(Value::Bool)
            .map_or_else(|| yaml_to_json(value), Ok)
            .map_err(|e| failed(format!("Invalid parameter setting {pair}: {e}")))?;
        let path: Vec<&str> = key_path.trim().split('.').collect();
        set_path_value(&mut changed, &path, &value, &[]);
    }
    Ok(changed)
}

/// Patroni's `patch_config` on JSON: mappings merge, `null` deletes, other values replace.
pub fn patch_config(config: &mut Map<String, Value>, data: &Map<String, Value>) {
    for (k, v) in data {
        match v {
            Value::Null => {
                config.remove(k);
            }
            Value::Object(sub) => match config.get_mut(k) {
                Some(Value::Object(existing)) => patch_config(existing, sub),
                _ => {
                    config.insert(k.clone(), v.clone());
                }
            },
            _ => {
                config.insert(k.clone(), v.clone());
            }
        }
    }
}

fn read_source(filename: &str) -> Result<String, CtlError> {
    if filename == "-" {
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s).map_err(|e| failed(format!("cannot read stdin: {e}")))?;
        Ok(s)
    } else {
        std::fs::read_to_string(filename).map_err(|e| failed(format!("cannot read {filename}: {e}")))
    }
}

/// `apply_yaml_file`: `data` patched with the YAML mapping in `filename` (`-` = stdin).
pub fn apply_yaml(
    data: &Map<String, Value>,
    text: &str,
    source: &str,
) -> Result<Map<String, Value>, CtlError> {
    let mut changed = data.clone();
    match yaml_to_json(text).map_err(|e| failed(format!("{source} is not valid YAML: {e}")))? {
        Value::Object(m) => patch_config(&mut changed, &m),
        Value::Null => {}
        _ => return Err(failed(format!("{source} must contain a YAML mapping"))),
    }
    Ok(changed)
}

/// `difflib.unified_diff(a, b)` with no file names, as patronictl prints it on a non-terminal.
pub fn unified_diff(before: &str, after: &str) -> String {
    let a: Vec<&str> = before.trim_end_matches('\n').split('\n').collect();
    let b: Vec<&str> = after.trim_end_matches('\n').split('\n').collect();
    // LCS table (configurations are small)
    let (n, m) = (a.len(), b.len());
    let mut lcs = vec![vec![0u32; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i][j] = if a[i] == b[j] { lcs[i + 1][j + 1] + 1 } else { lcs[i + 1][j].max(lcs[i][j + 1]) };
        }
    }
    // edit script: (tag, a index, b index); ' ' equal, '-' delete, '+' insert
    let mut ops: Vec<(char, usize, usize)> = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < n || j < m {
        if i < n && j < m && a[i] == b[j] {
            ops.push((' ', i, j));
            i += 1;
            j += 1;
        } else if j < m && (i == n || lcs[i][j + 1] > lcs[i + 1][j]) {
            ops.push(('+', i, j));
            j += 1;
        } else {
            ops.push(('-', i, j));
            i += 1;
        }
    }
    if ops.iter().all(|o| o.0 == ' ') {
        return String::new();
    }
    const CONTEXT: usize = 3;
    // hunks: ranges of ops around changes, merging when gaps are ≤ 2*CONTEXT
    let changes: Vec<usize> = ops.iter().enumerate().filter(|(_, o)| o.0 != ' ').map(|(k, _)| k).collect();
    let mut hunks: Vec<(usize, usize)> = Vec::new();
    for &c in &changes {
        let start = c.saturating_sub(CONTEXT);
        let end = (c + CONTEXT + 1).min(ops.len());
        match hunks.last_mut() {
            Some(h) if start <= h.1 => h.1 = h.1.max(end),
            _ => hunks.push((start, end)),
        }
    }
    let range = |start: usize, len: usize| -> String {
        let beginning = if len == 0 { start } else { start + 1 };
        if len == 1 { format!("{beginning}") } else { format!("{beginning},{len}") }
    };
    let mut out = String::from("--- \n+++ \n");
    for (s, e) in hunks {
        let slice = &ops[s..e];
        let a_len = slice.iter().filter(|o| o.0 != '+').count();
        let b_len = slice.iter().filter(|o| o.0 != '-').count();
        let (a0, b0) = (slice[0].1, slice[0].2);
        out.push_str(&format!("@@ -{} +{} @@\n", range(a0, a_len), range(b0, b_len)));
        for &(tag, ai, bj) in slice {
            let line = if tag == '+' { b[bj] } else { a[ai] };
            out.push(tag);
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// `edit-config` options.
#[derive(Clone, Debug, Default)]
pub struct EditOptions {
    /// `-q`.
    pub quiet: bool,
    /// `-s`.
    pub set: Vec<String>,
    /// `-p`.
    pub pg: Vec<String>,
    /// `--apply`.
    pub apply: Option<String>,
    /// `--replace`.
    pub replace: Option<String>,
    /// `--force`.
    pub force: bool,
}

/// Removed when dropped.
struct TempFile(std::path::PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn invoke_editor(before: &str, cluster_name: &str) -> Result<(String, Value), CtlError> {
    let editor = std::env::var("EDITOR").ok().filter(|e| !e.is_empty()).or_else(|| {
        ["editor", "vi"].iter().find_map(|e| {
            std::env::var_os("PATH").and_then(|p| {
                std::env::split_paths(&p)
                    .map(|d| d.join(e))
                    .find(|f| f.is_file())
                    .map(|f| f.display().to_string())
            })
        })
    });
    let Some(editor) = editor else {
        return Err(failed("EDITOR environment variable is not set. editor or vi are not available"));
    };
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
    let path = std::env::temp_dir().join(format!(
        "{}-config-{}-{nanos}.yaml",
        cluster_name.replace('/', "_"),
        std::process::id()
    ));
    let file = TempFile(path);
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&file.0)
        .and_then(|mut f| std::io::Write::write_all(&mut f, before.as_bytes()))
        .map_err(|e| failed(format!("cannot write the temporary file {}: {e}", file.0.display())))?;
    // $EDITOR may carry arguments (`code --wait`)
    let mut words = shlex::split(&editor).unwrap_or_else(|| vec![editor.clone()]);
    if words.is_empty() {
        words.push(editor);
    }
    let status = std::process::Command::new(&words[0])
        .args(&words[1..])
        .arg(&file.0)
        .status()
        .map_err(|e| failed(format!("cannot run the editor {}: {e}", words[0])))?;
    if !status.success() {
        return Err(failed(format!("Editor exited with return code {}", status.code().unwrap_or(-1))));
    }
    let after =
        std::fs::read_to_string(&file.0).map_err(|e| failed(format!("cannot read the edited file: {e}")))?;
    let v = yaml_to_json(&after)
        .map_err(|e| failed(format!("the edited configuration is not valid YAML: {e}")))?;
    Ok((after, v))
}

/// `edit-config`.
pub async fn edit_config(cluster_name: &str, dcs: &Arc<dyn Dcs>, o: EditOptions) -> Result<(), CtlError> {
    let cluster = super::load(dcs, cluster_name).await?;
    let Some(cfg) = &cluster.config else {
        return Err(failed(format!("The config key does not exist in the cluster {cluster_name}")));
    };
    let before = format_config(&cfg.data);
    let mut changed = cfg.data.clone();
    let mut after: Option<String> = None;
    if let Some(f) = &o.replace {
        changed = apply_yaml(&Map::new(), &read_source(f)?, f)?;
        after = Some(format_config(&changed));
    }
    if let Some(f) = &o.apply {
        changed = apply_yaml(&changed, &read_source(f)?, f)?;
        after = Some(format_config(&changed));
    }
    if !o.set.is_empty() || !o.pg.is_empty() {
        let pairs: Vec<String> = o
            .set
            .iter()
            .cloned()
            .chain(o.pg.iter().map(|p| format!("postgresql.parameters.{}", p.trim_start())))
            .collect();
        changed = apply_config_changes(&changed, &pairs)?;
        after = Some(format_config(&changed));
    }
    let after = match after {
        Some(a) => a,
        None => {
            let (text, v) = invoke_editor(&before, cluster_name)?;
            changed = match v {
                Value::Object(m) => m,
                Value::Null => Map::new(),
                _ => return Err(failed("the edited configuration must be a YAML mapping")),
            };
            text
        }
    };
    if changed == cfg.data {
        if !o.quiet {
            echo("Not changed")?;
        }
        return Ok(());
    }
    if !o.quiet {
        super::write_out(&unified_diff(&before, &after))?;
    }
    let from_stdin = o.apply.as_deref() == Some("-") || o.replace.as_deref() == Some("-");
    if from_stdin && !o.force {
        return echo("Use --force option to apply changes");
    }
    if o.force || confirm("Apply these changes?")? {
        let text = serde_json::to_string(&Value::Object(changed)).map_err(|e| failed(e.to_string()))?;
        let ok = dcs
            .set_config_value(&text, Some(cfg.version))
            .await
            .map_err(|e| failed(format!("cannot write the config key: {e}")))?;
        if !ok {
            return Err(failed("Config modification aborted due to concurrent changes"));
        }
        echo("Configuration changed")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn set_pairs_follow_patronictl_paths() {
        let data =
            obj(json!({"ttl": 30, "postgresql": {"parameters": {"max_connections": 100}}, "pause": true}));
        let pairs: Vec<String> = [
            "ttl=20",
            "loop_wait= 5",
            "postgresql.parameters.auto_explain.log_min_duration=100ms",
            "postgresql.parameters.max_connections=null",
            "pause=null",
            "synchronous_mode=on",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let c = apply_config_changes(&data, &pairs).unwrap();
        assert_eq!(
            Value::Object(c),
            json!({"ttl": 20, "loop_wait": 5, "synchronous_mode": true,
                   "postgresql": {"parameters": {"auto_explain.log_min_duration": "100ms"}}})
        );
        // removing the last key removes the emptied parents
        let c = apply_config_changes(&obj(json!({"a": {"b": 1}})), &["a.b=null".to_string()]).unwrap();
        assert!(c.is_empty());
        assert_eq!(
            apply_config_changes(&data, &["novalue".into()]).unwrap_err().to_string(),
            "Invalid parameter setting novalue"
        );
    }

    #[test]
    fn apply_merges_and_null_deletes() {
        let data = obj(json!({"ttl": 30, "postgresql": {"parameters": {"a": 1, "b": 2}, "use_slots": true}}));
        let c =
            apply_yaml(&data, "postgresql:\n  parameters:\n    a: null\n    c: 3\nttl: 25\n", "f").unwrap();
        assert_eq!(
            Value::Object(c),
            json!({"ttl": 25, "postgresql": {"parameters": {"b": 2, "c": 3}, "use_slots": true}})
        );
        assert!(apply_yaml(&data, "- 1\n", "f").is_err());
        // --replace starts from nothing
        let c = apply_yaml(&Map::new(), "ttl: 10\n", "f").unwrap();
        assert_eq!(Value::Object(c), json!({"ttl": 10}));
    }

    #[test]
    fn diff_matches_difflib_for_a_one_line_change() {
        let before = "loop_wait: 10\nmaximum_lag_on_failover: 1048576\npostgresql:\n  use_pg_rewind: true\nretry_timeout: 10\nttl: 30\n";
        let after = before.replace("ttl: 30", "ttl: 20");
        // difflib.unified_diff(listify(before), listify(after)) printed line by line
        assert_eq!(
            unified_diff(before, &after),
            "--- \n+++ \n@@ -3,4 +3,4 @@\n postgresql:\n   use_pg_rewind: true\n retry_timeout: 10\n-ttl: 30\n+ttl: 20\n"
        );
        assert_eq!(unified_diff("a\n", "a\n"), "");
        assert_eq!(unified_diff("a\n", "b\n"), "--- \n+++ \n@@ -1 +1 @@\n-a\n+b\n");
    }
}
