//! Where the PostgreSQL binaries are: Debian (`/usr/lib/postgresql/N/bin`), PGDG RPM
//! (`/usr/pgsql-N/bin`), or `PATH`, for PostgreSQL 13–18.

use std::path::{Path, PathBuf};

/// Major versions searched, newest first.
pub const SUPPORTED_MAJORS: &[u32] = &[18, 17, 16, 15, 14, 13];

/// Candidate directories for `major` in packaging layouts.
pub fn candidates(major: u32) -> [PathBuf; 2] {
    [
        PathBuf::from(format!("/usr/lib/postgresql/{major}/bin")),
        PathBuf::from(format!("/usr/pgsql-{major}/bin")),
    ]
}

fn has_server(dir: &Path) -> bool {
    dir.join("postgres").is_file() && dir.join("pg_ctl").is_file()
}

/// Find a bin dir: for `major` only when given, else the newest supported version installed, else the
/// directory on `PATH` holding `postgres` and `pg_ctl`.
pub fn detect(major: Option<u32>) -> Option<PathBuf> {
    let majors: Vec<u32> = match major {
        Some(m) => vec![m],
        None => SUPPORTED_MAJORS.to_vec(),
    };
    for m in majors {
        if let Some(d) = candidates(m).into_iter().find(|d| has_server(d)) {
            return Some(d);
        }
    }
    if major.is_some() {
        return None;
    }
    std::env::var_os("PATH").and_then(|p| std::env::split_paths(&p).find(|d| has_server(d)))
}

/// Parse `postgres (PostgreSQL) 15.4 (Debian 15.4-1)` into the major version (15; 9.6 → 9).
pub fn parse_major(version_output: &str) -> Option<u32> {
    let v =
        version_output.split_whitespace().find(|w| w.chars().next().is_some_and(|c| c.is_ascii_digit()))?;
    v.split(['.', 'b', 'r', 'd']).next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_and_layouts() {
        assert_eq!(parse_major("postgres (PostgreSQL) 15.4 (Debian 15.4-1.pgdg120+1)"), Some(15));
        assert_eq!(parse_major("postgres (PostgreSQL) 18beta1"), Some(18));
        assert_eq!(parse_major("postgres (PostgreSQL) 9.6.24"), Some(9));
        assert_eq!(candidates(17)[1], PathBuf::from("/usr/pgsql-17/bin"));
    }
}
