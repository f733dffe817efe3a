//! DCS plugins loaded from shared libraries: the DCS contract suite through `libdcs_etcd.so` against a
//! real etcd, and the host's behaviour with broken plugins (`libdcs_faulty.so` and the broken
//! examples of `dcs-plugins/faulty`).
//!
//! The plugins are built by the first test that needs them (`cargo build -p …` into this test
//! binary's target directory), once per process and under a file lock across processes; or taken
//! prebuilt from `$PRAETOR_TEST_PLUGINS_DIR` (a `target/<profile>` directory) when that is set.
#![cfg(feature = "plugins")]

use praetor::dcs::plugin::{PluginDcs, PluginError};
use praetor::dcs::{Dcs, DcsError, DcsParams};
use praetor_dcs_abi::ABI_VERSION;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// Paths of the built plugin libraries.
pub struct Plugins {
    /// praetor's etcd backend.
    pub etcd: PathBuf,
    /// The memory store with injected faults.
    pub faulty: PathBuf,
    /// A plugin claiming ABI version `ABI_VERSION + 1`.
    pub wrong_abi: PathBuf,
    /// A shared library without the entry symbol.
    pub no_entry: PathBuf,
}

/// The directory of this test binary's build (`target/debug`).
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    // target/debug/deps/it-<hash>
    exe.parent()
        .and_then(Path::parent)
        .expect("the test binary lives in <target>/<profile>/deps")
        .to_path_buf()
}

/// Build the plugin crates once (per process; serialized across processes by a lock file).
pub fn plugins() -> &'static Plugins {
    static PLUGINS: OnceLock<Plugins> = OnceLock::new();
    PLUGINS.get_or_init(|| {
        if let Some(dir) = std::env::var_os("PRAETOR_TEST_PLUGINS_DIR") {
            // Prebuilt by the caller (`cargo build -p praetor-dcs-etcd -p praetor-dcs-faulty --lib --examples`).
            return located(PathBuf::from(dir));
        }
        let profile = profile_dir();
        let target = profile.parent().expect("<target>/<profile>").to_path_buf();
        let lock = std::fs::File::create(target.join("praetor-plugin-tests.lock"))
            .expect("create the build lock file");
        lock.lock().expect("lock the plugin build");
        let built = paths(profile.clone());
        if fresh(&built) {
            return checked(built);
        }
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let started = Instant::now();
        let out = Command::new(&cargo)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .args(["build", "-p", "praetor-dcs-etcd", "-p", "praetor-dcs-faulty", "--lib", "--examples"])
            .arg("--target-dir")
            .arg(&target)
            .output()
            .expect("run cargo to build the DCS plugins");
        assert!(
            out.status.success(),
            "building the DCS plugins failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        eprintln!("built the DCS plugins in {:?}", started.elapsed());
        drop(lock);
        checked(built)
    })
}

/// Every library was built after this test binary and after every source file of the plugin
/// crates, so cargo would have nothing to do. nextest runs each test in its own process; this
/// keeps it to one cargo run per test run.
fn fresh(p: &Plugins) -> bool {
    let mtime = |f: &Path| std::fs::metadata(f).and_then(|m| m.modified()).ok();
    let libs: Option<Vec<_>> =
        [&p.etcd, &p.faulty, &p.wrong_abi, &p.no_entry].iter().map(|f| mtime(f)).collect();
    let Some(oldest_lib) = libs.and_then(|v| v.into_iter().min()) else { return false };
    let Some(mut newest_input) = std::env::current_exe().ok().and_then(|e| mtime(&e)) else { return false };
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("dcs-plugins");
    for dir in ["etcd", "etcd/src", "faulty", "faulty/src", "faulty/examples"] {
        let Ok(entries) = std::fs::read_dir(root.join(dir)) else { return false };
        for e in entries.flatten() {
            if let Some(t) = mtime(&e.path()) {
                newest_input = newest_input.max(t);
            }
        }
    }
    oldest_lib > newest_input
}

/// The libraries as `cargo build` lays them out under `profile` (e.g. `target/debug`).
fn located(profile: PathBuf) -> Plugins {
    checked(paths(profile))
}

fn paths(profile: PathBuf) -> Plugins {
    Plugins {
        etcd: profile.join("libdcs_etcd.so"),
        faulty: profile.join("libdcs_faulty.so"),
        wrong_abi: profile.join("examples/libdcs_wrong_abi.so"),
        no_entry: profile.join("examples/libdcs_no_entry.so"),
    }
}

/// `p`, after checking every library exists.
fn checked(p: Plugins) -> Plugins {
    for f in [&p.etcd, &p.faulty, &p.wrong_abi, &p.no_entry] {
        assert!(f.is_file(), "{} was not built", f.display());
    }
    p
}

/// [`plugins`] off the async runtime.
pub async fn built() -> &'static Plugins {
    tokio::task::spawn_blocking(plugins).await.expect("the plugin build does not panic")
}

fn params(scope: &str, name: &str, retry_timeout: Duration) -> DcsParams {
    DcsParams {
        namespace: "/service".into(),
        scope: scope.into(),
        name: name.into(),
        ttl: Duration::from_secs(10),
        loop_wait: Duration::from_secs(1),
        retry_timeout,
    }
}

/// A client of the faulty plugin on its own in-memory store, with these faults.
async fn faulty(store: &str, name: &str, faults: serde_json::Value) -> Result<PluginDcs, PluginError> {
    let config = json!({"store": store, "block_ms": 20_000, "faults": faults});
    PluginDcs::connect(&built().await.faulty, config, params(store, name, Duration::from_secs(1))).await
}

fn source_of(e: &DcsError) -> Option<&PluginError> {
    std::error::Error::source(e)?.downcast_ref::<PluginError>()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_of_another_abi_version_is_refused_naming_both_versions() {
    let p = built().await;
    let err = PluginDcs::connect(&p.wrong_abi, json!(null), params("abi", "m", Duration::from_secs(1)))
        .await
        .expect_err("another ABI version must be refused");
    match &err {
        PluginError::AbiMismatch { found, expected, path } => {
            assert_eq!(*found, ABI_VERSION + 1);
            assert_eq!(*expected, ABI_VERSION);
            assert!(path.ends_with("libdcs_wrong_abi.so"), "{}", path.display());
        }
        other => panic!("expected AbiMismatch, got {other}"),
    }
    let msg = err.to_string();
    assert!(
        msg.contains(&format!("version {}", ABI_VERSION + 1)) && msg.contains("libdcs_wrong_abi.so"),
        "{msg}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_library_without_the_entry_symbol_is_refused() {
    let p = built().await;
    let err = PluginDcs::connect(&p.no_entry, json!(null), params("sym", "m", Duration::from_secs(1)))
        .await
        .expect_err("no entry symbol");
    assert!(matches!(err, PluginError::MissingSymbol { .. }), "{err}");
    let msg = err.to_string();
    assert!(msg.contains("praetor_dcs_plugin_init") && msg.contains("libdcs_no_entry.so"), "{msg}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_plugin_file_is_reported_with_its_path() {
    let err = PluginDcs::connect(
        Path::new("/nonexistent/libdcs_x.so"),
        json!(null),
        params("nf", "m", Duration::from_secs(1)),
    )
    .await
    .expect_err("no such file");
    assert!(matches!(err, PluginError::NotFound { .. }), "{err}");
    assert!(err.to_string().contains("/nonexistent/libdcs_x.so"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_go_through_the_plugin_to_its_store() {
    let a = faulty("plain", "pg0", json!({})).await.expect("create");
    let b = faulty("plain", "pg1", json!({})).await.expect("create");
    assert_eq!(a.plugin_backend(), "memory");
    assert!(
        a.backend().starts_with("plugin:") && a.backend().ends_with("libdcs_faulty.so"),
        "{}",
        a.backend()
    );
    assert!(a.attempt_to_acquire_leader().await.expect("acquire"));
    assert!(!b.attempt_to_acquire_leader().await.expect("acquire"), "the store is shared: one winner");
    assert!(
        a.touch_member(r#"{"conn_url":"postgres://127.0.0.1:5432/postgres","state":"running"}"#)
            .await
            .expect("touch")
    );
    assert!(a.set_config_value(r#"{"ttl":30}"#, None).await.expect("config"));
    let cluster = b.load_cluster().await.expect("load");
    let leader = cluster.leader.clone().expect("leader key");
    assert_eq!(leader.name, "pg0");
    assert_eq!(cluster.member("pg0").expect("member").data.state, "running");
    assert_eq!(cluster.config.as_ref().expect("config").data["ttl"], 30);
    let stale = cluster.config.as_ref().map(|c| c.version);
    assert!(b.set_config_value(r#"{"ttl":20}"#, stale).await.expect("cas"));
    assert!(!a.set_config_value(r#"{"ttl":10}"#, stale).await.expect("stale cas"), "a stale version loses");
    let v = b
        .set_sync_state_value(r#"{"leader":"pg0","quorum":0,"sync_standby":"pg1"}"#, None)
        .await
        .expect("sync");
    assert!(v.is_some());
    // watch: woken by the leader key's deletion.
    let watcher = {
        let version = Some(leader.version);
        let b = Arc::new(b);
        let w = b.clone();
        (b, tokio::spawn(async move { w.watch(version, Duration::from_secs(8)).await }))
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(a.delete_leader(Some(&leader)).await.expect("delete"));
    let t = Instant::now();
    assert!(watcher.1.await.expect("join").expect("watch"), "woken by a change");
    assert!(t.elapsed() < Duration::from_secs(5), "woke after {:?}", t.elapsed());
    a.close().await.expect("close");
    assert!(
        watcher.0.load_cluster().await.expect("load").member("pg0").is_none(),
        "closing drops the member key"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_inside_a_call_is_an_error_and_the_next_call_works() {
    let dcs = faulty("panic", "pg0", json!({"touch_member": "panic_once", "write_status": "panic"}))
        .await
        .expect("create");
    let err = dcs.touch_member(r#"{"state":"running"}"#).await.expect_err("the plugin panicked");
    assert!(matches!(err, DcsError::Backend { .. }), "{err}");
    match source_of(&err) {
        Some(PluginError::Panicked { method, message, .. }) => {
            assert_eq!(*method, "touch_member");
            assert!(message.contains("injected panic in touch_member"), "{message}");
        }
        other => panic!("expected a Panicked source, got {other:?}"),
    }
    // Still here, and the same client keeps working.
    assert!(dcs.touch_member(r#"{"state":"running"}"#).await.expect("the next call works"));
    assert!(dcs.write_status(r#"{"optime":1}"#).await.is_err(), "a method that always panics keeps failing");
    assert!(dcs.attempt_to_acquire_leader().await.expect("other methods work"));
    let cluster = dcs.load_cluster().await.expect("load");
    assert_eq!(cluster.member("pg0").expect("member written after the panic").data.state, "running");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_while_creating_a_client_is_an_error() {
    let err = faulty("create-panic", "pg0", json!({"create": "panic"})).await.expect_err("create panicked");
    assert!(matches!(err, PluginError::Panicked { method: "create", .. }), "{err}");
    // The library is still usable.
    let dcs = faulty("create-panic", "pg0", json!({})).await.expect("a later create works");
    assert!(dcs.take_leader().await.expect("take"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_blocking_past_its_deadline_fails_in_time_and_others_still_work() {
    // retry_timeout 1 s: the deadline is 1 s + 1 s grace; the plugin sleeps 20 s.
    let dcs = faulty("block", "pg0", json!({"load_cluster": "block"})).await.expect("create");
    let t = Instant::now();
    let err = dcs.load_cluster().await.expect_err("the call must be abandoned");
    let took = t.elapsed();
    assert!(matches!(err, DcsError::Unavailable(ref m) if m.contains("load_cluster")), "{err}");
    assert!(took >= Duration::from_secs(2), "gave up early: {took:?}");
    assert!(took < Duration::from_millis(3500), "deadline 2 s + margin, took {took:?}");
    // The abandoned call still sleeps inside the plugin; other calls are not held up.
    let t = Instant::now();
    assert!(dcs.attempt_to_acquire_leader().await.expect("acquire"));
    assert!(t.elapsed() < Duration::from_secs(1), "took {:?}", t.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_gets_its_timeout_on_top_of_the_deadline() {
    // A blocking watch of 3 s with retry_timeout 1 s: not abandoned before 3 + 1 + 1 s.
    let config = json!({"store": "watch-deadline", "block_ms": 2_500, "faults": {"watch": "block"}});
    let dcs = PluginDcs::connect(&built().await.faulty, config, params("wd", "pg0", Duration::from_secs(1)))
        .await
        .expect("create");
    let t = Instant::now();
    // The plugin sleeps 2.5 s, then watches an absent leader key: "changed" at once.
    let woke = dcs.watch(Some(praetor::dcs::model::Version(1)), Duration::from_secs(3)).await.expect("watch");
    assert!(woke);
    assert!(t.elapsed() >= Duration::from_millis(2500), "took {:?}", t.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_or_misshapen_responses_are_errors_naming_the_method() {
    let dcs = faulty("garbage", "pg0", json!({"load_cluster": "garbage", "take_leader": "wrong_shape"}))
        .await
        .expect("create");
    let err = dcs.load_cluster().await.expect_err("garbage");
    assert!(matches!(source_of(&err), Some(PluginError::Garbage { method: "load_cluster", .. })), "{err:?}");
    let err = dcs.take_leader().await.expect_err("wrong shape");
    assert!(matches!(source_of(&err), Some(PluginError::Garbage { method: "take_leader", .. })), "{err:?}");
    assert!(dcs.attempt_to_acquire_leader().await.expect("other calls work"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unavailable_store_reported_by_the_plugin_is_unavailable() {
    let dcs = faulty("unavail", "pg0", json!({"touch_member": "unavailable"})).await.expect("create");
    let err = dcs.touch_member("{}").await.expect_err("unavailable");
    assert!(matches!(err, DcsError::Unavailable(ref m) if m.contains("injected outage")), "{err}");
    assert!(err.is_retryable());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_factory_opens_a_plugin_section_with_its_config() {
    use praetor::config::dcs::{DcsSection, PluginConfig};
    let p = built().await;
    let yaml = "store: factory\nfaults:\n  write_failsafe: unavailable\n";
    let section = DcsSection::Plugin(PluginConfig {
        path: Some(p.faulty.clone()),
        config: Some(serde_yaml_ng::from_str(yaml).expect("yaml")),
    });
    let dcs = praetor::dcs::factory::connect(&section, params("factory", "pg0", Duration::from_secs(1)))
        .await
        .expect("the factory loads the plugin");
    assert!(dcs.backend().starts_with("plugin:"), "{}", dcs.backend());
    assert!(dcs.attempt_to_acquire_leader().await.expect("acquire"));
    let err = dcs.write_failsafe("{}").await.expect_err("the plugin got its config");
    assert!(matches!(err, DcsError::Unavailable(_)), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_factory_reports_a_broken_plugin_section_as_a_config_error() {
    use praetor::config::dcs::{DcsSection, PluginConfig};
    let p = built().await;
    let section = DcsSection::Plugin(PluginConfig { path: Some(p.wrong_abi.clone()), config: None });
    let Err(err) =
        praetor::dcs::factory::connect(&section, params("factory-abi", "pg0", Duration::from_secs(1))).await
    else {
        panic!("a plugin of another ABI version must be refused")
    };
    assert!(matches!(err, DcsError::Config(ref m) if m.contains("ABI version")), "{err}");
    let section = DcsSection::Plugin(PluginConfig { path: None, config: None });
    let Err(err) =
        praetor::dcs::factory::connect(&section, params("factory-nopath", "pg0", Duration::from_secs(1)))
            .await
    else {
        panic!("a plugin section needs a path")
    };
    assert!(matches!(err, DcsError::Config(ref m) if m.contains("plugin.path")), "{err}");
    let section = DcsSection::Plugin(PluginConfig {
        path: Some(p.faulty.clone()),
        config: Some(serde_yaml_ng::from_str("faults: {create: unavailable}").expect("yaml")),
    });
    let Err(err) =
        praetor::dcs::factory::connect(&section, params("factory-down", "pg0", Duration::from_secs(1))).await
    else {
        panic!("the store is down")
    };
    assert!(matches!(err, DcsError::Unavailable(ref m) if m.contains("injected outage")), "{err}");
}

/// The contract suite through `libdcs_etcd.so`, against a real etcd.
#[cfg(feature = "etcd")]
mod etcd {
    use super::*;
    use crate::dcs_contract::{Fixture, params, unique_scope};
    use async_trait::async_trait;

    /// A real etcd per test; clients are `PluginDcs` over `libdcs_etcd.so`.
    pub struct EtcdPluginFixture {
        server: crate::support::etcd::EtcdServer,
        raw: etcd_client::Client,
        scope: String,
        plugin: PathBuf,
    }

    impl EtcdPluginFixture {
        /// Start etcd and build the plugin; `None` when etcd is not installed (panics in CI).
        pub async fn new() -> Option<EtcdPluginFixture> {
            let plugin = built().await.etcd.clone();
            let server = crate::support::etcd::EtcdServer::start().await?;
            let raw = server.client().await;
            Some(EtcdPluginFixture { server, raw, scope: unique_scope("etcd-plugin"), plugin })
        }
    }

    #[async_trait]
    impl Fixture for EtcdPluginFixture {
        fn scope(&self) -> String {
            self.scope.clone()
        }

        async fn client(&self, name: &str, ttl: Duration) -> Arc<dyn Dcs> {
            let config = json!({"hosts": self.server.hosts()});
            let dcs = PluginDcs::connect(&self.plugin, config, params(&self.scope, name, ttl))
                .await
                .expect("open an etcd client through the plugin");
            assert_eq!(dcs.plugin_backend(), "etcd3");
            Arc::new(dcs)
        }

        async fn raw_put(&self, full_key: &str, value: &str) {
            self.raw.clone().put(full_key, value, None).await.expect("raw etcd put");
        }

        async fn raw_get(&self, full_key: &str) -> Option<String> {
            let r = self.raw.clone().get(full_key, None).await.expect("raw etcd get");
            r.kvs().first().map(|kv| String::from_utf8_lossy(kv.value()).into_owned())
        }
    }

    crate::dcs_contract!(contract, EtcdPluginFixture::new());

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_bad_plugin_config_is_a_config_error_from_the_plugin() {
        let Some(fx) = EtcdPluginFixture::new().await else { return };
        let err = PluginDcs::connect(
            &fx.plugin,
            json!({"hosts": [{"not": "a host"}]}),
            params(&fx.scope, "m", Duration::from_secs(4)),
        )
        .await
        .expect_err("hosts must be strings");
        assert!(matches!(err, PluginError::Failed { code: 4, .. }), "{err}");
        assert!(err.to_string().contains("etcd3"), "{err}");
    }
}

/// Three agents (the built `praetor` binary) whose only DCS is `libdcs_etcd.so`, configured through
/// a `plugin:` section: bootstrap, then an unplanned failover. In `cluster::` so nextest runs it
/// alone. `PRAETOR_TEST_AGENT_BIN` runs another build of the agent, e.g. one with no compiled-in DCS
/// (`cargo build --no-default-features --features plugins`).
#[cfg(feature = "etcd")]
mod cluster {
    use super::built;
    use crate::support::agents::{AgentCluster, AgentOpts, Store, TTL};
    use crate::support::etcd::EtcdStore;
    use std::path::PathBuf;
    use std::time::Duration;

    /// PATRONI-COMPAT §6.2–§6.3 with every agent on the plugin backend.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn three_agents_bootstrap_and_fail_over_through_the_etcd_plugin() {
        let plugin = built().await.etcd.clone();
        let Some(store) = EtcdStore::start().await else { return };
        let store = store.through_plugin(&plugin);
        let opts = AgentOpts {
            agent_bin: std::env::var_os("PRAETOR_TEST_AGENT_BIN").map(PathBuf::from),
            ..Default::default()
        };
        let Some(mut c) = AgentCluster::start_with("plugincluster", &store, opts) else { return };
        let leader = c.wait_primary_among(&[0, 1, 2], Duration::from_secs(120)).await;
        assert_eq!(store.leader(&c.scope).await, Some(format!("pg{leader}")), "the leader key is in etcd");
        for i in 0..3 {
            assert!(
                c.log(i).contains("opened DCS plugin client"),
                "pg{i} did not use the plugin\n{}",
                c.logs()
            );
        }

        // Unplanned failover: the leader's agent and its postmaster die together.
        c.kill_node(leader);
        let rest: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
        let new_leader = c.wait_primary_among(&rest, Duration::from_secs(TTL + 40)).await;
        assert_ne!(new_leader, leader);
        assert_eq!(store.leader(&c.scope).await, Some(format!("pg{new_leader}")));
    }
}
