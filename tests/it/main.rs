//! praetor's integration tests: one binary, a module per area.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a test failure
#[cfg(feature = "etcd")]
mod api; // REST API on a real cluster: health checks with PostgreSQL or etcd frozen, HAProxy (serial: cluster::)
#[cfg(feature = "etcd")]
mod cluster_ha; // the HA loop end to end: 3 agents, real etcd and PostgreSQL 15 (serial: cluster::)
mod config; // the praetor binary: --validate-config on real and broken configs, env, directories
#[cfg(feature = "consul")]
mod consul; // Consul backend against the Consul API model, Patroni 4.1.5 cross-check
#[cfg(all(feature = "etcd", feature = "consul", feature = "zookeeper"))]
mod ctl; // praetorctl output vs real patronictl 4.1.5, end to end against etcd
mod dcs_contract;
#[cfg(feature = "etcd")]
mod etcd; // etcd v3 backend: Patroni's raw layout, leases, watch, auth, member failover
#[cfg(feature = "etcd")]
mod partition; // partitions in network namespaces: isolated leader, DCS loss, flapping links (serial: cluster::)
mod partition_policy; // praetor's partition rules on a real cluster: fencing, strict-sync handover (serial: cluster::)
mod plugins; // DCS plugins: contract suite through libdcs_etcd.so, broken-plugin errors
mod postgres_ctl; // PostgreSQL controller against real PostgreSQL 15
#[cfg(feature = "etcd")]
mod rest_control; // REST management endpoints: real patronictl 4.1.5 drives praetor; scheduled restarts persist
mod support;
#[cfg(feature = "etcd")]
mod sync_rep; // synchronous replication end to end: zero-loss failovers, strict-mode write blocking (serial: cluster::)
#[cfg(feature = "zookeeper")]
mod zookeeper; // ZooKeeper backend: contract suite, sessions, Patroni 4.1.5 interop
