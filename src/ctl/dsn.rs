//! `dsn`: a libpq connection string for the leader, a member with a role, or a named member.

use super::list::conn_kwargs;
use super::pyjson::py_str;
use crate::dcs::model::{Cluster, Member};
use crate::types::Role;

/// The `-r/--role` choices of patronictl (`CtlPostgresqlRole`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum CtlRole {
    /// The holder of the leader key.
    Leader,
    /// The leader, unless it is a standby leader.
    Primary,
    /// The leader, unless it is a primary.
    #[value(name = "standby-leader")]
    StandbyLeader,
    /// Any member that is not the leader.
    Replica,
    /// Same as `replica`.
    Standby,
    /// Any member.
    Any,
}

/// Why `dsn` printed nothing.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DsnError {
    /// Both `--role` and `--member` were given.
    #[error("--role and --member are mutually exclusive options")]
    RoleAndMember,
    /// No member matches.
    #[error("Can not find a suitable member")]
    NoMember,
}

/// `get_all_members(cluster, role)`: members with `role`, in name order.
pub fn members_with_role(cluster: &Cluster, role: CtlRole) -> Vec<&Member> {
    let leader_name = cluster.leader.as_ref().map(|l| l.name.as_str()).filter(|n| !n.is_empty());
    match role {
        CtlRole::Leader | CtlRole::Primary | CtlRole::StandbyLeader => {
            let Some(leader) = cluster.leader_member() else { return Vec::new() };
            let r = &leader.data.role;
            let ok = match role {
                CtlRole::Leader => true,
                CtlRole::StandbyLeader => *r != Role::Primary,
                _ => *r != Role::StandbyLeader,
            };
            if ok { vec![leader] } else { Vec::new() }
        }
        CtlRole::Any => cluster.members.iter().collect(),
        CtlRole::Replica | CtlRole::Standby => {
            cluster.members.iter().filter(|m| Some(m.name.as_str()) != leader_name).collect()
        }
    }
}

/// `patronictl dsn`: `host=<host> port=<port>` of the chosen member, newline-terminated.
pub fn dsn(cluster: &Cluster, role: Option<CtlRole>, member: Option<&str>) -> Result<String, DsnError> {
    let role = match (role, member) {
        (Some(_), Some(_)) => return Err(DsnError::RoleAndMember),
        (_, Some(_)) => CtlRole::Any,
        (r, None) => r.unwrap_or(CtlRole::Leader),
    };
    let m = members_with_role(cluster, role)
        .into_iter()
        .find(|m| member.is_none_or(|n| m.name == n))
        .ok_or(DsnError::NoMember)?;
    let (host, port) = conn_kwargs(m).ok_or(DsnError::NoMember)?;
    Ok(format!("host={} port={}\n", py_str(&host), py_str(&port)))
}
