//! Go `time.Duration` text, as Consul reads and writes it.
//!
//! Consul parses every duration parameter (`wait`, session `TTL`, `LockDelay`) with Go's
//! `time.ParseDuration` (developer.hashicorp.com/consul/api-docs/features/blocking: "This value can
//! be specified in the form of "10s" or "5m""), so `"10.0s"`, `"1m30s"` and `"0.001s"` are all valid.

use std::time::Duration;

/// Parse a Go duration string (`"15s"`, `"10.0s"`, `"1m30s"`, `"250ms"`). Negative durations and
/// unit-less numbers other than `"0"` are rejected, as Go does.
pub fn parse(s: &str) -> Result<Duration, String> {
    let orig = s;
    let s = s.trim();
    let s = s.strip_prefix('+').unwrap_or(s);
    if s.starts_with('-') {
        return Err(format!("time: invalid duration \"{orig}\""));
    }
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.is_empty() {
        return Err(format!("time: invalid duration \"{orig}\""));
    }
    let mut total = 0f64;
    let mut rest = s;
    while !rest.is_empty() {
        let num_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        if num_len == 0 {
            return Err(format!("time: invalid duration \"{orig}\""));
        }
        let n: f64 = rest[..num_len].parse().map_err(|_| format!("time: invalid duration \"{orig}\""))?;
        rest = &rest[num_len..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let nanos_per = match unit {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            "" => return Err(format!("time: missing unit in duration \"{orig}\"")),
            other => return Err(format!("time: unknown unit \"{other}\" in duration \"{orig}\"")),
        };
        total += n * nanos_per;
    }
    Ok(Duration::from_nanos(total.round() as u64))
}

/// Format like Go's `Duration.String()`: `10s`, `24h0m0s`, `1.5s`, `250ms`.
pub fn format(d: Duration) -> String {
    let ns = d.as_nanos();
    if ns == 0 {
        return "0s".into();
    }
    if ns < 1_000_000_000 {
        if ns.is_multiple_of(1_000_000) {
            return format!("{}ms", ns / 1_000_000);
        }
        if ns.is_multiple_of(1_000) {
            return format!("{}µs", ns / 1_000);
        }
        return format!("{ns}ns");
    }
    let total_secs = ns / 1_000_000_000;
    let frac = ns % 1_000_000_000;
    let h = total_secs / 3600;
    let m = (total_secs % 3600) / 60;
    let s = total_secs % 60;
    let secs = if frac == 0 {
        format!("{s}s")
    } else {
        let f = format!("{frac:09}");
        format!("{s}.{}s", f.trim_end_matches('0'))
    };
    if h > 0 {
        format!("{h}h{m}m{secs}")
    } else if m > 0 {
        format!("{m}m{secs}")
    } else {
        secs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_go_durations() {
        assert_eq!(parse("15s").unwrap(), Duration::from_secs(15));
        assert_eq!(parse("10.0s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse("0.001s").unwrap(), Duration::from_millis(1));
        assert_eq!(parse("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse("9.5s").unwrap(), Duration::from_millis(9500));
        assert_eq!(parse("0").unwrap(), Duration::ZERO);
        assert!(parse("10").is_err());
        assert!(parse("-1s").is_err());
        assert!(parse("").is_err());
        assert!(parse("5x").is_err());
    }

    #[test]
    fn formats_like_go() {
        assert_eq!(format(Duration::from_secs(10)), "10s");
        assert_eq!(format(Duration::from_secs(86400)), "24h0m0s");
        assert_eq!(format(Duration::from_millis(1500)), "1.5s");
        assert_eq!(format(Duration::from_millis(250)), "250ms");
        assert_eq!(format(Duration::from_secs(90)), "1m30s");
    }
}
