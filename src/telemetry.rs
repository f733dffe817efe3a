//! Logging: `tracing` events rendered in Patroni's plain format
//! (`2026-11-22 10:00:00,123 INFO: message`) or as one JSON object per line (`log.type: json`), to
//! stderr or to `<log.dir>/patroni.log`.
//!
//! Owns: the global subscriber. Log-based alerts written for Patroni match the plain lines, because
//! the HA cycle logs Patroni's wording (see `ha::action::Reason`).

use crate::config::validate::LogConfig;
use std::fmt::Write as _;
use std::io::Write as _;
use std::sync::Mutex;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::prelude::*;

/// Patroni's level name (`WARNING`, not `WARN`).
pub fn level_name(l: &Level) -> &'static str {
    match *l {
        Level::ERROR => "ERROR",
        Level::WARN => "WARNING",
        Level::INFO => "INFO",
        Level::DEBUG => "DEBUG",
        Level::TRACE => "DEBUG",
    }
}

/// Python logging's `asctime`: `2026-11-22 10:00:00,123` in local time.
pub fn asctime(t: chrono::DateTime<chrono::Local>) -> String {
    t.format("%Y-%m-%d %H:%M:%S,%3f").to_string()
}

/// One plain line: `<asctime> <LEVEL>: <message>[ key=value…]`.
pub fn plain_line(time: &str, level: &Level, message: &str, fields: &[(String, String)]) -> String {
    let mut s = format!("{time} {}: {message}", level_name(level));
    for (k, v) in fields {
        let _ = write!(s, " {k}={v}");
    }
    s
}

/// One JSON line: `{"time", "levelname", "message", …fields}`.
pub fn json_line(time: &str, level: &Level, message: &str, fields: &[(String, String)]) -> String {
    let mut m = serde_json::Map::new();
    m.insert("time".into(), time.into());
    m.insert("levelname".into(), level_name(level).into());
    m.insert("message".into(), message.into());
    for (k, v) in fields {
        m.insert(k.clone(), v.clone().into());
    }
    serde_json::Value::Object(m).to_string()
}

#[derive(Default)]
struct Fields {
    message: String,
    rest: Vec<(String, String)>,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message = value.to_string();
        } else {
            self.rest.push((field.name().to_string(), value.to_string()));
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.message = format!("{value:?}");
        } else {
            self.rest.push((field.name().to_string(), format!("{value:?}")));
        }
    }
}

/// Where the lines go.
enum Sink {
    Stderr,
    File(Mutex<std::fs::File>),
}

struct PatroniLayer {
    json: bool,
    sink: Sink,
}

impl<S: Subscriber> Layer<S> for PatroniLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let mut f = Fields::default();
        event.record(&mut f);
        let time = asctime(chrono::Local::now());
        let level = event.metadata().level();
        let mut line = if self.json {
            json_line(&time, level, &f.message, &f.rest)
        } else {
            plain_line(&time, level, &f.message, &f.rest)
        };
        line.push('\n');
        match &self.sink {
            Sink::Stderr => {
                let _ = std::io::stderr().lock().write_all(line.as_bytes());
            }
            Sink::File(file) => {
                if let Ok(mut file) = file.lock() {
                    let _ = file.write_all(line.as_bytes());
                }
            }
        }
    }
}

/// The `EnvFilter` directive for a Patroni level name (`WARNING` → `warn`), `RUST_LOG` winning.
fn filter(cfg: &LogConfig) -> EnvFilter {
    if let Ok(f) = EnvFilter::try_from_default_env() {
        return f;
    }
    let lvl = |s: &str| match s.to_ascii_uppercase().as_str() {
        "DEBUG" => "debug",
        "WARNING" | "WARN" => "warn",
        "ERROR" | "CRITICAL" => "error",
        _ => "info",
    };
    let mut d = lvl(&cfg.level).to_string();
    // Chatty dependencies stay at WARNING unless asked for.
    for noisy in ["hyper", "h2", "tower", "reqwest", "rustls", "tokio_postgres", "etcd_client", "tonic"] {
        let _ = write!(d, ",{noisy}=warn");
    }
    for (k, v) in &cfg.loggers {
        let _ = write!(d, ",{}={}", k.replace('.', "::"), lvl(v));
    }
    EnvFilter::try_new(&d).unwrap_or_else(|_| EnvFilter::new("info"))
}

/// Install the global subscriber for `cfg`. Fails only when `log.dir` cannot be opened; a second
/// call (tests) is ignored.
pub fn init(cfg: &LogConfig) -> anyhow::Result<()> {
    let sink = match &cfg.dir {
        None => Sink::Stderr,
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .map_err(|e| anyhow::anyhow!("create log.dir {}: {e}", dir.display()))?;
            let p = dir.join("patroni.log");
            let f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&p)
                .map_err(|e| anyhow::anyhow!("open {}: {e}", p.display()))?;
            Sink::File(Mutex::new(f))
        }
    };
    let layer = PatroniLayer { json: cfg.json, sink };
    let _ = tracing_subscriber::registry().with(filter(cfg)).with(layer).try_init();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn plain_line_is_patronis_format() {
        let t = chrono::Local.with_ymd_and_hms(2026, 11, 22, 10, 0, 0).single().expect("valid time")
            + chrono::Duration::milliseconds(123);
        let line =
            plain_line(&asctime(t), &Level::INFO, "no action. I am (pg0), the leader with the lock", &[]);
        assert_eq!(line, "2026-11-22 10:00:00,123 INFO: no action. I am (pg0), the leader with the lock");
        assert_eq!(plain_line("t", &Level::WARN, "x", &[]), "t WARNING: x");
    }

    #[test]
    fn json_line_carries_level_message_and_fields() {
        let l = json_line("t", &Level::ERROR, "boom", &[("pid".into(), "7".into())]);
        let v: serde_json::Value = serde_json::from_str(&l).expect("json");
        assert_eq!(v["levelname"], "ERROR");
        assert_eq!(v["message"], "boom");
        assert_eq!(v["pid"], "7");
    }
}
