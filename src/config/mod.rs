//! Configuration: the Patroni YAML shape, environment overrides, validation.
//!
//! Owns: parsing and validation. Must not use `postgres`, `ha` or `api` (it names
//! [`crate::dcs::DcsParams`] only to hand the DCS its parameters). YAML parsing stays in this
//! module so replacing the YAML crate touches nothing else.
//!
//! Pipeline ([`load`]): read a file, a directory of `*.yml`/`*.yaml` files (merged in name order
//! like Patroni), or `PATRONI_CONFIGURATION`; patch the `PATRONI_*` variables over it
//! ([`mod@env`]); deserialize into [`raw::RawConfig`] collecting *every* type error (a failing key is
//! reported with its path and value, removed, and parsing goes on) and every unknown key; then
//! [`validate`] builds the immutable [`Config`].
//!
//! Problems are values ([`Problem`]): errors make [`load`] fail, warnings come back with the
//! config. Kinds of warning:
//! - unknown keys (with a "did you mean" hint for typos and keys in the wrong section); errors
//!   when loading with `strict` (`--validate-config`);
//! - `ignored: not supported by praetor` for Patroni keys praetor parses but does not act on
//!   (`kubernetes`, `raft`, `exhibitor`, `citus`, etcd `srv`);
//! - deprecated keys that Patroni 4 removed but guides still carry (see [`validate`] for what
//!   praetor does with each);
//! - adjusted values (the timeout rule, the `ttl` floor);
//! - `environment:` findings about this host (only from [`validate::check_environment`]).

pub mod dcs;
pub mod de;
pub mod dynamic;
pub mod env;
pub mod raw;
pub mod sample;
pub mod validate;

pub use dynamic::DynamicConfig;
pub use validate::{Config, check_environment};

use serde::de::DeserializeOwned;
use serde_yaml_ng::Value as YamlValue;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// How serious a [`Problem`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// The configuration cannot be used.
    Error,
    /// Usable, but something was ignored, adjusted or looks wrong.
    Warning,
}

/// What kind of [`Problem`] this is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProblemKind {
    /// A value of the wrong type or out of range.
    Invalid,
    /// A required key is absent.
    Missing,
    /// A key praetor does not know.
    Unknown,
    /// A known key in a place where it has no effect.
    Misplaced,
    /// A Patroni key praetor accepts but does not implement.
    Unsupported,
    /// A key Patroni removed or renamed.
    Deprecated,
    /// A value was changed to satisfy a rule.
    Adjusted,
    /// A finding about this host, not about the file (`--validate-config` only).
    Environment,
    /// Could not read the configuration source.
    Source,
}

/// One finding about the configuration, with the key path it concerns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// Error or warning.
    pub severity: Severity,
    /// Category.
    pub kind: ProblemKind,
    /// Dotted key path (`postgresql.authentication.replication.password`), an environment
    /// variable name, or a file name.
    pub path: String,
    /// What is wrong, the value, and what was expected.
    pub message: String,
}

impl Problem {
    /// An error.
    pub fn error(kind: ProblemKind, path: impl Into<String>, message: impl Into<String>) -> Problem {
        Problem { severity: Severity::Error, kind, path: path.into(), message: message.into() }
    }

    /// A warning.
    pub fn warning(kind: ProblemKind, path: impl Into<String>, message: impl Into<String>) -> Problem {
        Problem { severity: Severity::Warning, kind, path: path.into(), message: message.into() }
    }

    /// True for errors.
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for Problem {
    /// `error: <path>: <message>` or `warning: <path>: <message>`; environment findings read
    /// `warning: environment: <path>: <message>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sev = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        let tag = match self.kind {
            ProblemKind::Environment => "environment: ",
            ProblemKind::Unsupported => "ignored: not supported by praetor: ",
            ProblemKind::Deprecated => "deprecated: ",
            _ => "",
        };
        if self.kind == ProblemKind::Unsupported {
            write!(f, "{sev}: {}: {tag}{}", self.path, self.message)
        } else {
            write!(f, "{sev}: {tag}{}: {}", self.path, self.message)
        }
    }
}

/// The configuration could not be used. Holds every problem found (errors and warnings).
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {}", self.errors().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
pub struct ConfigErrors(pub Vec<Problem>);

impl ConfigErrors {
    /// The errors only.
    pub fn errors(&self) -> impl Iterator<Item = &Problem> {
        self.0.iter().filter(|p| p.is_error())
    }
}

/// `--dcs`: which store to use regardless of the sections in the file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DcsChoice {
    /// `etcd` (read as etcd v3).
    Etcd,
    /// `etcd3`.
    Etcd3,
    /// `consul`.
    Consul,
    /// `zookeeper`.
    ZooKeeper,
    /// `plugin:PATH`.
    Plugin(PathBuf),
}

impl std::str::FromStr for DcsChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "etcd" => Ok(DcsChoice::Etcd),
            "etcd3" => Ok(DcsChoice::Etcd3),
            "consul" => Ok(DcsChoice::Consul),
            "zookeeper" => Ok(DcsChoice::ZooKeeper),
            other => match other.strip_prefix("plugin:") {
                Some(path) if !path.is_empty() => Ok(DcsChoice::Plugin(PathBuf::from(path))),
                _ => Err(format!(
                    "unknown DCS {other:?}: expected etcd, etcd3, consul, zookeeper or plugin:PATH"
                )),
            },
        }
    }
}

/// Inputs of [`load`].
#[derive(Clone, Debug, Default)]
pub struct LoadOptions {
    /// A YAML file or a directory of YAML files. `None`: use `PATRONI_CONFIGURATION`, else the
    /// `PATRONI_*` variables alone.
    pub path: Option<PathBuf>,
    /// The environment (only `PATRONI_*` entries are read).
    pub env: BTreeMap<String, String>,
    /// `--dcs` override.
    pub dcs: Option<DcsChoice>,
    /// `--validate-config`: unknown keys are errors.
    pub strict: bool,
}

/// A loaded configuration and the warnings found on the way.
#[derive(Clone, Debug)]
pub struct Loaded {
    /// The validated configuration.
    pub config: Config,
    /// Warnings (never errors).
    pub warnings: Vec<Problem>,
    /// The local configuration (files + environment) as YAML, as Patroni's `--print` shows it.
    /// Contains the passwords of the file: wrapped so that `Debug` does not print them.
    pub local_yaml: crate::types::Secret<String>,
}

/// Load, parse and validate the configuration. Every problem is collected; if any is an error
/// the result is `Err` with all of them.
pub fn load(opts: &LoadOptions) -> Result<Loaded, ConfigErrors> {
    let mut problems = Vec::new();
    let local = match read_local(opts, &mut problems) {
        Some(v) => v,
        None => return Err(ConfigErrors(problems)),
    };
    finish(local, opts, problems)
}

/// The local configuration (file or directory, with the `PATRONI_*` environment patched over it)
/// read leniently and **not** validated: for tools such as praetorctl that need a few keys only and
/// accept files without `name`/`postgresql`. Fails only when the source cannot be read or parsed;
/// type problems of single keys are returned as warnings (the key reads as absent).
pub fn load_raw(opts: &LoadOptions) -> Result<(raw::RawConfig, Vec<Problem>), ConfigErrors> {
    let mut problems = Vec::new();
    let Some(local) = read_local(opts, &mut problems) else { return Err(ConfigErrors(problems)) };
    if problems.iter().any(Problem::is_error) {
        return Err(ConfigErrors(problems));
    }
    let (raw, _unknown) = deserialize_collecting::<raw::RawConfig>(local, "", &mut problems);
    for p in &mut problems {
        p.severity = Severity::Warning;
    }
    Ok((raw, problems))
}

/// Parse a configuration given as YAML text (plus `opts.env` overrides); `opts.path` is ignored.
pub fn load_str(yaml: &str, opts: &LoadOptions) -> Result<Loaded, ConfigErrors> {
    let mut problems = Vec::new();
    let mut local = match parse_yaml(yaml) {
        Ok((v, dups)) => {
            duplicate_warnings("the text", dups, &mut problems);
            v
        }
        Err(e) => {
            return Err(ConfigErrors(vec![Problem::error(
                ProblemKind::Source,
                "<text>",
                format!("not valid YAML: {e}"),
            )]));
        }
    };
    let (envcfg, env_problems) = env::environment_configuration(&opts.env);
    problems.extend(env_problems);
    patch(&mut local, envcfg);
    finish(local, opts, problems)
}

fn finish(local: YamlValue, opts: &LoadOptions, mut problems: Vec<Problem>) -> Result<Loaded, ConfigErrors> {
    let local_yaml = crate::types::Secret(serde_yaml_ng::to_string(&local).unwrap_or_default());
    let config = validate::build(local, opts, &mut problems);
    if opts.strict {
        for p in &mut problems {
            if p.kind == ProblemKind::Unknown {
                p.severity = Severity::Error;
            }
        }
    }
    match config {
        Some(config) if !problems.iter().any(Problem::is_error) => {
            Ok(Loaded { config, warnings: problems, local_yaml })
        }
        _ => Err(ConfigErrors(problems)),
    }
}

/// The local configuration as Patroni assembles it (`P:config.py Config.__init__`): the file or
/// directory with the environment patched over it; without a path, `PATRONI_CONFIGURATION`
/// (environment variables are then not applied, as in Patroni) or the environment alone.
fn read_local(opts: &LoadOptions, problems: &mut Vec<Problem>) -> Option<YamlValue> {
    let (envcfg, env_problems) = env::environment_configuration(&opts.env);
    problems.extend(env_problems);
    match &opts.path {
        Some(path) => {
            let mut v = read_config_path(path, problems)?;
            patch(&mut v, envcfg);
            Some(v)
        }
        None => match opts.env.get(env::CONFIGURATION_VAR).filter(|s| !s.trim().is_empty()) {
            Some(text) => match parse_yaml(text) {
                Ok((v, dups)) => {
                    duplicate_warnings(env::CONFIGURATION_VAR, dups, problems);
                    Some(v)
                }
                Err(e) => {
                    problems.push(Problem::error(
                        ProblemKind::Source,
                        env::CONFIGURATION_VAR,
                        format!("not valid YAML: {e}"),
                    ));
                    None
                }
            },
            None => Some(envcfg),
        },
    }
}

/// Read a file, or every `*.yml`/`*.yaml` file of a directory in name order, merged with
/// Patroni's `patch_config`.
fn read_config_path(path: &Path, problems: &mut Vec<Problem>) -> Option<YamlValue> {
    let files: Vec<PathBuf> = if path.is_file() {
        vec![path.to_path_buf()]
    } else if path.is_dir() {
        let mut files: Vec<PathBuf> = match std::fs::read_dir(path) {
            Ok(rd) => rd
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "yml" || e == "yaml"))
                .collect(),
            Err(e) => {
                problems.push(Problem::error(
                    ProblemKind::Source,
                    path.display().to_string(),
                    format!("cannot read the directory: {e}"),
                ));
                return None;
            }
        };
        files.sort();
        files
    } else {
        problems.push(Problem::error(
            ProblemKind::Source,
            path.display().to_string(),
            "config path is neither a file nor a directory",
        ));
        return None;
    };
    let mut merged = YamlValue::Mapping(Default::default());
    let mut ok = true;
    for file in files {
        let text = match std::fs::read_to_string(&file) {
            Ok(t) => t,
            Err(e) => {
                problems.push(Problem::error(
                    ProblemKind::Source,
                    file.display().to_string(),
                    format!("cannot read: {e}"),
                ));
                ok = false;
                continue;
            }
        };
        match parse_yaml(&text) {
            Ok((YamlValue::Null, _)) => {}
            Ok((v @ YamlValue::Mapping(_), dups)) => {
                duplicate_warnings(&file.display().to_string(), dups, problems);
                patch(&mut merged, v)
            }
            Ok(_) => {
                problems.push(Problem::error(
                    ProblemKind::Source,
                    file.display().to_string(),
                    "the file does not contain a YAML mapping",
                ));
                ok = false;
            }
            Err(e) => {
                problems.push(Problem::error(
                    ProblemKind::Source,
                    file.display().to_string(),
                    format!("not valid YAML: {e}"),
                ));
                ok = false;
            }
        }
    }
    ok.then_some(merged)
}

/// Parse YAML text the way PyYAML's `safe_load` tolerates it: a key given twice in a mapping
/// keeps the last value (serde_yaml rejects such files). Returns the value and the paths of the
/// duplicated keys.
pub(crate) fn parse_yaml(text: &str) -> Result<(YamlValue, Vec<String>), serde_yaml_ng::Error> {
    use serde::de::DeserializeSeed;
    let dups = std::cell::RefCell::new(Vec::new());
    let de = serde_yaml_ng::Deserializer::from_str(text);
    let v = Loose { path: String::new(), dups: &dups }.deserialize(de)?;
    Ok((v, dups.into_inner()))
}

struct Loose<'a> {
    path: String,
    dups: &'a std::cell::RefCell<Vec<String>>,
}

impl<'de> serde::de::DeserializeSeed<'de> for Loose<'_> {
    type Value = YamlValue;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<YamlValue, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for Loose<'_> {
    type Value = YamlValue;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<YamlValue, E> {
        Ok(YamlValue::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<YamlValue, E> {
        Ok(YamlValue::Number(v.into()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<YamlValue, E> {
        Ok(YamlValue::Number(v.into()))
    }
    fn visit_f64<E>(self, v: f64) -> Result<YamlValue, E> {
        Ok(YamlValue::Number(v.into()))
    }
    fn visit_str<E>(self, v: &str) -> Result<YamlValue, E> {
        Ok(YamlValue::String(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<YamlValue, E> {
        Ok(YamlValue::String(v))
    }
    fn visit_unit<E>(self) -> Result<YamlValue, E> {
        Ok(YamlValue::Null)
    }
    fn visit_none<E>(self) -> Result<YamlValue, E> {
        Ok(YamlValue::Null)
    }
    fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<YamlValue, D::Error> {
        serde::de::DeserializeSeed::deserialize(self, d)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<YamlValue, A::Error> {
        let mut out = Vec::new();
        while let Some(v) =
            seq.next_element_seed(Loose { path: format!("{}[{}]", self.path, out.len()), dups: self.dups })?
        {
            out.push(v);
        }
        Ok(YamlValue::Sequence(out))
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<YamlValue, A::Error> {
        let mut out = serde_yaml_ng::Mapping::new();
        while let Some(k) = map.next_key_seed(Loose { path: self.path.clone(), dups: self.dups })? {
            let name = de::scalar_string(&k).unwrap_or_default();
            let v = map.next_value_seed(Loose { path: join_path(&self.path, &name), dups: self.dups })?;
            if out.insert(k, v).is_some() {
                self.dups.borrow_mut().push(join_path(&self.path, &name));
            }
        }
        Ok(YamlValue::Mapping(out))
    }
    fn visit_enum<A: serde::de::EnumAccess<'de>>(self, data: A) -> Result<YamlValue, A::Error> {
        use serde::de::VariantAccess;
        let (tag, variant) = data.variant::<String>()?;
        let value = variant.newtype_variant_seed(Loose { path: self.path.clone(), dups: self.dups })?;
        Ok(YamlValue::Tagged(Box::new(serde_yaml_ng::value::TaggedValue {
            tag: serde_yaml_ng::value::Tag::new(tag),
            value,
        })))
    }
}

fn duplicate_warnings(source: &str, dups: Vec<String>, problems: &mut Vec<Problem>) {
    for d in dups {
        problems.push(Problem::warning(
            ProblemKind::Invalid,
            d,
            format!("the key is given more than once in {source}; the last value is used (as Patroni does)"),
        ));
    }
}

/// Patroni's `patch_config`: mappings merge recursively, `null` removes a key, anything else
/// replaces.
pub(crate) fn patch(base: &mut YamlValue, over: YamlValue) {
    match (base, over) {
        (YamlValue::Mapping(b), YamlValue::Mapping(o)) => {
            for (k, v) in o {
                if v.is_null() {
                    b.remove(&k);
                } else if let (Some(existing @ YamlValue::Mapping(_)), YamlValue::Mapping(_)) =
                    (b.get_mut(&k), &v)
                {
                    patch(existing, v);
                } else {
                    b.insert(k, v);
                }
            }
        }
        (b, o) => *b = o,
    }
}

/// Deserialize `value` into `T`, collecting every error instead of stopping at the first: the
/// value at a failing path is reported, removed, and deserialization is retried (all structs have
/// `#[serde(default)]`). Returns the value and the paths serde ignored (unknown keys).
pub(crate) fn deserialize_collecting<T: DeserializeOwned + Default>(
    mut value: YamlValue,
    prefix: &str,
    problems: &mut Vec<Problem>,
) -> (T, Vec<String>) {
    for _ in 0..500 {
        let mut ignored = Vec::new();
        let mut track = serde_path_to_error::Track::new();
        let result = {
            let de = serde_path_to_error::Deserializer::new(value.clone(), &mut track);
            serde_ignored::deserialize(de, |p| {
                let mut segs = Vec::new();
                ignored_segments(&p, &mut segs);
                ignored.push(join_path(prefix, &segs.join(".")));
            })
        };
        match result {
            Ok(t) => return (t, ignored),
            Err(e) => {
                let path = track.path();
                let segs: Vec<Seg> = path
                    .iter()
                    .filter_map(|s| match s {
                        serde_path_to_error::Segment::Map { key } => Some(Seg::Key(key.clone())),
                        serde_path_to_error::Segment::Seq { index } => Some(Seg::Index(*index)),
                        _ => None,
                    })
                    .collect();
                let shown = segs.iter().fold(String::new(), |acc, s| match s {
                    Seg::Key(k) if acc.is_empty() => k.clone(),
                    Seg::Key(k) => format!("{acc}.{k}"),
                    Seg::Index(i) => format!("{acc}[{i}]"),
                });
                let msg = e.to_string();
                let msg = msg.split(" at line ").next().unwrap_or(&msg).to_string();
                problems.push(Problem::error(ProblemKind::Invalid, join_path(prefix, &shown), msg));
                if segs.is_empty() || !remove_at(&mut value, &segs) {
                    return (T::default(), Vec::new());
                }
            }
        }
    }
    (T::default(), Vec::new())
}

enum Seg {
    Key(String),
    Index(usize),
}

fn remove_at(v: &mut YamlValue, segs: &[Seg]) -> bool {
    let Some((last, parents)) = segs.split_last() else { return false };
    let mut cur = v;
    for s in parents {
        let next = match (s, cur) {
            (Seg::Key(k), YamlValue::Mapping(m)) => m
                .iter_mut()
                .find(|(mk, _)| de::scalar_string(mk).as_deref() == Some(k.as_str()))
                .map(|(_, v)| v),
            (Seg::Index(i), YamlValue::Sequence(s)) => s.get_mut(*i),
            (_, YamlValue::Tagged(t)) => Some(&mut t.value),
            _ => None,
        };
        match next {
            Some(n) => cur = n,
            None => return false,
        }
    }
    match (last, cur) {
        (Seg::Key(k), YamlValue::Mapping(m)) => {
            let key = m.keys().find(|mk| de::scalar_string(mk).as_deref() == Some(k.as_str())).cloned();
            key.is_some_and(|key| m.remove(&key).is_some())
        }
        (Seg::Index(i), YamlValue::Sequence(s)) if *i < s.len() => {
            s.remove(*i);
            true
        }
        _ => false,
    }
}

fn ignored_segments(p: &serde_ignored::Path<'_>, out: &mut Vec<String>) {
    match p {
        serde_ignored::Path::Root => {}
        serde_ignored::Path::Seq { parent, index } => {
            ignored_segments(parent, out);
            out.push(index.to_string());
        }
        serde_ignored::Path::Map { parent, key } => {
            ignored_segments(parent, out);
            out.push(key.clone());
        }
        serde_ignored::Path::Some { parent }
        | serde_ignored::Path::NewtypeStruct { parent }
        | serde_ignored::Path::NewtypeVariant { parent } => {
            ignored_segments(parent, out);
        }
    }
}

pub(crate) fn join_path(prefix: &str, rest: &str) -> String {
    match (prefix.is_empty(), rest.is_empty()) {
        (true, _) => rest.to_string(),
        (false, true) => prefix.to_string(),
        (false, false) => format!("{prefix}.{rest}"),
    }
}

/// YAML → JSON (non-string keys become their text; tags are dropped).
pub(crate) fn yaml_to_json(v: &YamlValue) -> serde_json::Value {
    use serde_json::Value as J;
    match v {
        YamlValue::Null => J::Null,
        YamlValue::Bool(b) => J::Bool(*b),
        YamlValue::Number(n) => {
            if let Some(i) = n.as_i64() {
                J::from(i)
            } else if let Some(u) = n.as_u64() {
                J::from(u)
            } else {
                n.as_f64().and_then(serde_json::Number::from_f64).map_or(J::Null, J::Number)
            }
        }
        YamlValue::String(s) => J::String(s.clone()),
        YamlValue::Sequence(s) => J::Array(s.iter().map(yaml_to_json).collect()),
        YamlValue::Mapping(m) => J::Object(
            m.iter()
                .map(|(k, v)| (de::scalar_string(k).unwrap_or_else(|| format!("{k:?}")), yaml_to_json(v)))
                .collect(),
        ),
        YamlValue::Tagged(t) => yaml_to_json(&t.value),
    }
}

/// Patroni's `parse_bool` on a JSON value.
pub(crate) fn dynamic_bool(v: &serde_json::Value) -> Option<bool> {
    use serde_json::Value as J;
    match v {
        J::Bool(b) => Some(*b),
        J::Number(n) => n.as_i64().map(|i| i != 0),
        J::String(s) => match s.trim().to_ascii_lowercase().as_str() {
            "on" | "true" | "yes" | "1" => Some(true),
            "off" | "false" | "no" | "0" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

/// Patroni's `parse_int` (no units) on a JSON value.
pub(crate) fn dynamic_int(v: &serde_json::Value) -> Option<i64> {
    match v {
        serde_json::Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f.round() as i64)),
        serde_json::Value::String(s) => de::parse_int_str(s, None),
        _ => None,
    }
}

/// The text of a JSON scalar.
pub(crate) fn dynamic_string(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        serde_json::Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Known keys of every section, for unknown-key hints ("did you mean", "belongs in").
pub const SECTIONS: &[(&str, &[&str])] = &[
    (
        "",
        &[
            "name",
            "scope",
            "namespace",
            "thread_pool_size",
            "thread_stack_size",
            "log",
            "restapi",
            "ctl",
            "bootstrap",
            "postgresql",
            "watchdog",
            "tags",
            "citus",
            "etcd",
            "etcd3",
            "consul",
            "zookeeper",
            "exhibitor",
            "kubernetes",
            "raft",
            "plugin",
        ],
    ),
    (
        "log",
        &[
            "type",
            "level",
            "traceback_level",
            "format",
            "dateformat",
            "static_fields",
            "max_queue_size",
            "dir",
            "file_num",
            "file_size",
            "mode",
            "loggers",
            "deduplicate_heartbeat_logs",
        ],
    ),
    (
        "restapi",
        &[
            "listen",
            "connect_address",
            "authentication",
            "auth",
            "certfile",
            "keyfile",
            "keyfile_password",
            "cafile",
            "ciphers",
            "verify_client",
            "allowlist",
            "allowlist_include_members",
            "http_extra_headers",
            "https_extra_headers",
            "request_queue_size",
            "server_tokens",
            "thread_pool_size",
        ],
    ),
    ("restapi.authentication", &["username", "password"]),
    ("ctl", &["authentication", "auth", "insecure", "cacert", "certfile", "keyfile", "keyfile_password"]),
    ("ctl.authentication", &["username", "password"]),
    ("bootstrap", &["dcs", "method", "initdb", "post_bootstrap", "post_init", "users", "pg_hba"]),
    ("bootstrap.dcs", dynamic::DYNAMIC_KEYS),
    ("bootstrap.dcs.postgresql", dynamic::DYNAMIC_POSTGRESQL_KEYS),
    ("bootstrap.dcs.standby_cluster", dynamic::STANDBY_CLUSTER_KEYS),
    (
        "postgresql",
        &[
            "listen",
            "connect_address",
            "proxy_address",
            "data_dir",
            "config_dir",
            "bin_dir",
            "bin_name",
            "pgpass",
            "authentication",
            "callbacks",
            "create_replica_methods",
            "basebackup",
            "recovery_conf",
            "custom_conf",
            "parameters",
            "pg_hba",
            "pg_ident",
            "pg_ctl_timeout",
            "use_pg_rewind",
            "use_slots",
            "use_unix_socket",
            "use_unix_socket_repl",
            "remove_data_directory_on_rewind_failure",
            "remove_data_directory_on_diverged_timelines",
            "pre_promote",
            "before_stop",
            "rewind",
        ],
    ),
    (
        "postgresql.bin_name",
        &["pg_ctl", "initdb", "pg_controldata", "pg_basebackup", "postgres", "pg_isready", "pg_rewind"],
    ),
    ("postgresql.authentication", &["superuser", "replication", "rewind"]),
    ("postgresql.authentication.superuser", AUTH_KEYS),
    ("postgresql.authentication.replication", AUTH_KEYS),
    ("postgresql.authentication.rewind", AUTH_KEYS),
    ("postgresql.callbacks", &["on_reload", "on_restart", "on_role_change", "on_start", "on_stop"]),
    ("watchdog", &["mode", "device", "safety_margin"]),
    ("citus", &["group", "database"]),
    ("etcd", ETCD_KEYS),
    ("etcd3", ETCD_KEYS),
    (
        "consul",
        &[
            "host",
            "url",
            "port",
            "scheme",
            "token",
            "verify",
            "cacert",
            "cert",
            "key",
            "dc",
            "consistency",
            "checks",
            "register_service",
            "service_tags",
            "service_check_interval",
            "service_check_tls_server_name",
        ],
    ),
    (
        "zookeeper",
        &["hosts", "use_ssl", "cacert", "cert", "key", "key_password", "verify", "set_acls", "auth_data"],
    ),
    ("plugin", &["path", "config"]),
];

const AUTH_KEYS: &[&str] = &[
    "username",
    "password",
    "sslmode",
    "sslkey",
    "sslpassword",
    "sslcert",
    "sslrootcert",
    "sslcrl",
    "sslcrldir",
    "gssencmode",
    "channel_binding",
    "sslnegotiation",
];
const ETCD_KEYS: &[&str] = &[
    "host",
    "hosts",
    "url",
    "proxy",
    "srv",
    "srv_suffix",
    "use_proxies",
    "protocol",
    "username",
    "password",
    "cacert",
    "cert",
    "key",
];

/// Known keys of `section` (a dotted path), if it is a fixed-shape section.
pub fn known_keys(section: &str) -> Option<&'static [&'static str]> {
    SECTIONS.iter().find(|(s, _)| *s == section).map(|(_, k)| *k)
}

fn similar(a: &str, b: &str) -> bool {
    let a = a.to_ascii_lowercase();
    let b = b.to_ascii_lowercase();
    let dist = strsim::damerau_levenshtein(&a, &b);
    let limit = if a.len().max(b.len()) <= 4 { 1 } else { 2 + a.len().max(b.len()) / 8 };
    dist <= limit || (strsim::jaro_winkler(&a, &b) >= 0.9 && a.len() > 3)
}

/// A warning for the unknown key `key` at `path`, with a hint when it is a typo of one of
/// `known` (the keys of its section) or a known key of another section.
pub(crate) fn unknown_key_problem(path: &str, key: &str, known: &[&str]) -> Problem {
    let parent = path.strip_suffix(key).map(|p| p.trim_end_matches('.')).unwrap_or("");
    let scored = |cands: &mut dyn Iterator<Item = &str>| -> Option<String> {
        cands
            .filter(|c| *c != key && similar(key, c))
            .min_by_key(|c| strsim::damerau_levenshtein(&key.to_ascii_lowercase(), &c.to_ascii_lowercase()))
            .map(String::from)
    };
    let homes: Vec<&str> = SECTIONS
        .iter()
        .filter(|(s, keys)| *s != parent && keys.iter().any(|k| k.eq_ignore_ascii_case(key)))
        .map(|(s, _)| *s)
        .collect();
    let hint = if !homes.is_empty() && homes.len() <= 3 {
        let places: Vec<String> = homes.iter().map(|h| format!("`{}`", join_path(h, key))).collect();
        let section = if parent.is_empty() { "the top level".to_string() } else { format!("`{parent}`") };
        Some(format!("`{key}` is not a key of {section}; it belongs in {}", places.join(" or ")))
    } else if let Some(best) = scored(&mut known.iter().copied()) {
        Some(format!("did you mean `{}`?", join_path(parent, &best)))
    } else {
        let mut best: Option<(usize, String)> = None;
        for (s, keys) in SECTIONS {
            for k in keys.iter() {
                if similar(key, k) && *s != parent {
                    let d = strsim::damerau_levenshtein(key, k);
                    if best.as_ref().is_none_or(|(bd, _)| d < *bd) {
                        best = Some((d, join_path(s, k)));
                    }
                }
            }
        }
        best.map(|(_, p)| format!("did you mean `{p}`?"))
    };
    let message = match hint {
        Some(h) => format!("unknown key, ignored; {h}"),
        None => "unknown key, ignored".to_string(),
    };
    Problem::warning(ProblemKind::Unknown, path, message)
}

#[cfg(test)]
mod tests;
