//! Tabular output in patronictl's formats (`ctl.py print_output`): `pretty` (and `topology`) tables,
//! `tsv`, `json` and `yaml`.

use super::pyjson::{self, py_str, truthy};
use super::pyyaml::{self, DumpOptions};
use super::table::{self, Align};
use serde_json::{Map, Value};

/// An output format of `list`, `topology` and `history`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// An ASCII table.
    Pretty,
    /// Tab-separated values with a header line.
    Tsv,
    /// A JSON list of objects.
    Json,
    /// A YAML list of mappings.
    Yaml,
    /// Same as `yaml`.
    Yml,
    /// `pretty`, with members ordered and indented as a replication tree (the `topology` command).
    #[value(skip)]
    Topology,
}

impl Format {
    /// `pretty` or `topology`: the formats that draw a table and print footers.
    pub fn is_table(self) -> bool {
        matches!(self, Format::Pretty | Format::Topology)
    }
}

/// `format_config_for_editing(data, flow)`: YAML as patronictl prints configuration.
pub fn yaml(data: &Value, flow: bool) -> String {
    pyyaml::dump(data, DumpOptions { flow, width: 200 })
}

/// `print_output(columns, rows, alignment, fmt, header)`; returns what patronictl echoes, including
/// the final newline. `header` non-empty means a member list (`list`/`topology`): the `Cluster`
/// column is folded into the title, empty values are left out of json/yaml, and `Tags` are YAML.
pub fn print_output(
    columns: &[String],
    rows: Vec<Vec<Value>>,
    right_aligned: &[&str],
    fmt: Format,
    header: &str,
) -> String {
    match fmt {
        Format::Json | Format::Yaml | Format::Yml => {
            let elements: Vec<Value> = rows
                .into_iter()
                .map(|r| {
                    let mut m = Map::new();
                    for (k, v) in columns.iter().zip(r) {
                        if header.is_empty() || !py_str(&v).is_empty() {
                            m.insert(k.clone(), v);
                        }
                    }
                    Value::Object(m)
                })
                .collect();
            let list = Value::Array(elements);
            let text = if fmt == Format::Json { pyjson::dumps(&list) } else { yaml(&list, false) };
            format!("{text}\n")
        }
        Format::Pretty | Format::Tsv | Format::Topology => {
            let mut columns = columns.to_vec();
            let mut rows = rows;
            let list_cluster = !header.is_empty() && columns.first().is_some_and(|c| c == "Cluster");
            if let Some(i) = columns.iter().position(|c| c == "Tags").filter(|_| list_cluster) {
                for row in &mut rows {
                    if row.get(i).is_some_and(truthy) {
                        let y = yaml(&row[i], fmt != Format::Pretty);
                        row[i] = Value::String(y.trim_matches(PY_WHITESPACE).to_string());
                    }
                }
            }
            if list_cluster && fmt != Format::Tsv {
                columns.remove(0);
                for row in &mut rows {
                    if !row.is_empty() {
                        row.remove(0);
                    }
                }
            }
            let rows: Vec<Vec<String>> = rows.iter().map(|r| r.iter().map(py_str).collect()).collect();
            if fmt == Format::Tsv {
                let mut out = String::new();
                for r in std::iter::once(&columns).chain(rows.iter()) {
                    out.push_str(&r.join("\t"));
                    out.push('\n');
                }
                out
            } else {
                let aligns: Vec<Align> = columns
                    .iter()
                    .map(|c| if right_aligned.contains(&c.as_str()) { Align::Right } else { Align::Left })
                    .collect();
                format!("{}\n", table::render(header, &columns, &aligns, &rows))
            }
        }
    }
}

/// Characters Python's `str.strip()` removes (ASCII whitespace and the Unicode separators YAML emits).
const PY_WHITESPACE: &[char] = &[' ', '\t', '\n', '\r', '\x0b', '\x0c', '\u{85}', '\u{2028}', '\u{2029}'];
