//! Patroni's key layout: `/<namespace>/<scope>/<key>` with duplicate slashes collapsed
//! (`dcs/__init__.py AbstractDCS.__init__`, PATRONI-COMPAT §2.1).

/// The paths of one cluster's keys.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterKeys {
    base: String,
}

/// The fixed key names under the cluster prefix.
pub mod name {
    /// Bootstrap race / system identifier.
    pub const INITIALIZE: &str = "initialize";
    /// Dynamic configuration.
    pub const CONFIG: &str = "config";
    /// Leader lock.
    pub const LEADER: &str = "leader";
    /// Manual failover/switchover request.
    pub const FAILOVER: &str = "failover";
    /// Timeline history.
    pub const HISTORY: &str = "history";
    /// Member keys directory.
    pub const MEMBERS: &str = "members/";
    /// Leader status (optime, slots).
    pub const STATUS: &str = "status";
    /// Legacy optime key.
    pub const OPTIME_LEADER: &str = "optime/leader";
    /// Synchronous replication state.
    pub const SYNC: &str = "sync";
    /// Failsafe member list.
    pub const FAILSAFE: &str = "failsafe";
}

impl ClusterKeys {
    /// Layout for `namespace` (default `/service`) and `scope`.
    pub fn new(namespace: &str, scope: &str) -> ClusterKeys {
        let raw = format!("/{namespace}/{scope}/");
        let mut base = String::with_capacity(raw.len());
        for c in raw.chars() {
            if c == '/' && base.ends_with('/') {
                continue;
            }
            base.push(c);
        }
        ClusterKeys { base }
    }

    /// `/<namespace>/<scope>/` with a leading and trailing slash.
    pub fn prefix(&self) -> &str {
        &self.base
    }

    /// Full path of a key under the prefix (`leader` → `/service/pg/leader`).
    pub fn path(&self, key: &str) -> String {
        format!("{}{}", self.base, key.trim_start_matches('/'))
    }

    /// Full path of `members/<name>`.
    pub fn member(&self, name: &str) -> String {
        self.path(&format!("{}{name}", name::MEMBERS))
    }

    /// A full path relative to the prefix, if it is under it.
    pub fn relative<'a>(&self, full: &'a str) -> Option<&'a str> {
        full.strip_prefix(&self.base).or_else(|| full.strip_prefix(self.base.trim_start_matches('/')))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_collapse_duplicate_slashes_like_patroni() {
        let k = ClusterKeys::new("/service/", "pg");
        assert_eq!(k.prefix(), "/service/pg/");
        assert_eq!(k.path("leader"), "/service/pg/leader");
        assert_eq!(k.member("pg0"), "/service/pg/members/pg0");
        assert_eq!(k.relative("/service/pg/members/pg0"), Some("members/pg0"));
        assert_eq!(k.relative("service/pg/config"), Some("config"));
        assert_eq!(ClusterKeys::new("service", "x").prefix(), "/service/x/");
    }
}
