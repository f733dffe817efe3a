//! The `praetor` binary's configuration commands: `--validate-config` on real-world Patroni
//! configs and on broken ones, `--generate-sample-config`, `PATRONI_*` overrides, directories.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/config")
}

/// Run `praetor` with `args` and a clean environment plus `env`.
fn praetor(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_praetor"));
    cmd.args(args).env_clear().env("PATH", std::env::var_os("PATH").unwrap_or_default());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run praetor")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The lines of `text` that start with `prefix` and name `path`.
fn lines_for<'a>(text: &'a str, prefix: &str, path: &str) -> Vec<&'a str> {
    text.lines().filter(|l| l.starts_with(prefix) && l.contains(&format!(" {path}:"))).collect()
}

#[test]
fn every_real_world_sample_passes_validate_config() {
    let dir = fixtures().join("samples");
    let mut files: Vec<PathBuf> =
        std::fs::read_dir(&dir).expect("samples dir").map(|e| e.expect("entry").path()).collect();
    files.sort();
    assert!(files.len() >= 2, "samples missing in {}", dir.display());
    for f in files {
        let o = praetor(&["--validate-config", f.to_str().expect("utf-8 path")], &[]);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(0), "{} failed:\n{err}", f.display());
        assert!(!err.lines().any(|l| l.starts_with("error:")), "{err}");
        // Removed keys the guides carry: accepted with a deprecation warning.
        assert!(
            !lines_for(&err, "warning: deprecated:", "bootstrap.pg_hba").is_empty(),
            "{}: {err}",
            f.display()
        );
        // `etcd:` is read as etcd v3 with a warning about mixed clusters.
        assert!(err.contains("must use `etcd3:`"), "{err}");
        // This host has neither /usr/lib/postgresql/16/bin nor /usr/pgsql-12/bin: environment warning.
        assert!(err.contains("warning: environment: postgresql.bin_dir:"), "{err}");
    }
    let ru = praetor(
        &["--validate-config", fixtures().join("samples/guide-ru-full.yml").to_str().expect("utf-8")],
        &[],
    );
    let err = stderr(&ru);
    let users = lines_for(&err, "warning: deprecated:", "bootstrap.users");
    assert_eq!(users.len(), 1, "{err}");
    assert!(users[0].contains("Patroni 4.0.0") && users[0].contains("post_bootstrap"), "{}", users[0]);
    let zh = stderr(&praetor(
        &["--validate-config", fixtures().join("samples/guide-zh-pg12.yml").to_str().expect("utf-8")],
        &[],
    ));
    assert!(!lines_for(&zh, "warning: deprecated:", "bootstrap.dcs.master_start_timeout").is_empty(), "{zh}");
}

#[test]
fn broken_config_fails_listing_every_problem_by_key_path() {
    let f = fixtures().join("broken-many.yml");
    let o = praetor(&["--validate-config", "-i", f.to_str().expect("utf-8")], &[]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    for path in [
        "name",
        "restapi.connect_address",
        "restapi.verify_client",
        "restapi.request_queue_size",
        "log.level",
        "log.file_num",
        "etcd3.use_proxies",
        "bootstrap.dcs.ttl",
        "bootstrap.dcs.synchronous_mode",
        "bootstrap.initdb[0]",
        "postgresql.data_dir",
        "postgresql.pg_ctl_timeout",
        "postgresql.authentication.superuser.password",
        "postgresql.authentication.replication.username",
        "watchdog.mode",
        "tags.nofailover",
        "tags.failover_priority",
    ] {
        assert_eq!(lines_for(&err, "error:", path).len(), 1, "expected one error for {path} in:\n{err}");
    }
    // Unknown keys are errors under --validate-config, with what was probably meant.
    let typo = lines_for(&err, "error:", "postgresql.paramters");
    assert_eq!(typo.len(), 1, "{err}");
    assert!(typo[0].contains("did you mean `postgresql.parameters`?"), "{}", typo[0]);
    let dyn_typo = lines_for(&err, "error:", "bootstrap.dcs.loop_wiat");
    assert!(dyn_typo.first().is_some_and(|l| l.contains("bootstrap.dcs.loop_wait")), "{err}");
    let misplaced = lines_for(&err, "error:", "ttl");
    assert!(misplaced.first().is_some_and(|l| l.contains("belongs in `bootstrap.dcs.ttl`")), "{err}");
    // Values appear in the messages.
    assert!(lines_for(&err, "error:", "log.file_num")[0].contains("\"many\""), "{err}");
    assert!(lines_for(&err, "error:", "restapi.verify_client")[0].contains("sometimes"), "{err}");
    assert!(err.contains("configuration is invalid: 20 errors"), "{err}");
}

#[test]
fn config_without_a_supported_dcs_is_rejected() {
    let f = fixtures().join("broken-no-dcs.yml");
    let o = praetor(&["--validate-config", "-i", f.to_str().expect("utf-8")], &[]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("no DCS section praetor supports (found kubernetes)"), "{err}");
    assert!(err.contains("warning: kubernetes: ignored: not supported by praetor"), "{err}");
}

#[test]
fn unparsable_yaml_names_the_file() {
    let f = fixtures().join("broken-yaml.yml");
    let o = praetor(&["--validate-config", f.to_str().expect("utf-8")], &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("broken-yaml.yml: not valid YAML"), "{}", stderr(&o));
    let missing = praetor(&["--validate-config", "/nonexistent/praetor.yml"], &[]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(stderr(&missing).contains("neither a file nor a directory"));
}

#[test]
fn generated_sample_config_passes_validate_config() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("praetor.yml");
    let o = praetor(&["--generate-sample-config", file.to_str().expect("utf-8")], &[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let text = std::fs::read_to_string(&file).expect("written");
    assert!(text.contains("bootstrap:") && text.contains("# "), "commented sample expected");
    let v = praetor(&["--validate-config", "-i", file.to_str().expect("utf-8")], &[]);
    let err = stderr(&v);
    assert_eq!(v.status.code(), Some(0), "{err}");
    assert!(
        !err.lines().any(|l| l.starts_with("error:")
            || (l.starts_with("warning:") && !l.starts_with("warning: environment:"))),
        "{err}"
    );
    // Without FILE the sample goes to stdout.
    let o = praetor(&["--generate-sample-config"], &[]);
    assert_eq!(o.status.code(), Some(0));
    assert!(stdout(&o).contains("postgresql:"));
}

#[test]
fn patroni_env_variables_override_the_file() {
    let f = fixtures().join("samples/guide-zh-pg12.yml");
    let o = praetor(
        &["--validate-config", "-i", "--print", f.to_str().expect("utf-8")],
        &[
            ("PATRONI_NAME", "env-node"),
            ("PATRONI_RESTAPI_CONNECT_ADDRESS", "10.9.9.9:8008"),
            ("PATRONI_ETCD_HOSTS", "10.9.9.1:2379,10.9.9.2:2379"),
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let printed: serde_yaml_ng::Value = serde_yaml_ng::from_str(&stdout(&o)).expect("--print writes YAML");
    assert_eq!(printed["name"].as_str(), Some("env-node"));
    assert_eq!(printed["restapi"]["connect_address"].as_str(), Some("10.9.9.9:8008"));
    assert_eq!(printed["etcd"]["hosts"].as_sequence().map(Vec::len), Some(2));
    assert_eq!(printed["scope"].as_str(), Some("pgsql"), "file values stay");
}

#[test]
fn whole_config_from_patroni_configuration_variable() {
    let yaml = std::fs::read_to_string(fixtures().join("samples/guide-zh-pg12.yml")).expect("read");
    let o = praetor(&["--validate-config", "-i", "--print"], &[("PATRONI_CONFIGURATION", &yaml)]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stdout(&o).contains("scope: pgsql"));
}

#[test]
fn directory_config_merges_yaml_files_in_name_order() {
    let dir = fixtures().join("dir");
    let o = praetor(&["--validate-config", "-i", "--print", dir.to_str().expect("utf-8")], &[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let printed: serde_yaml_ng::Value = serde_yaml_ng::from_str(&stdout(&o)).expect("YAML");
    assert_eq!(printed["name"].as_str(), Some("dir-node-1"));
    assert_eq!(printed["scope"].as_str(), Some("dirdemo"));
    assert_eq!(printed["postgresql"]["parameters"]["work_mem"].as_str(), Some("8MB"), "later file wins");
    assert_eq!(
        printed["postgresql"]["authentication"]["superuser"]["username"].as_str(),
        Some("postgres"),
        "earlier file kept"
    );
}

#[test]
fn version_and_usage_errors() {
    let o = praetor(&["--version"], &[]);
    assert_eq!(o.status.code(), Some(0));
    assert!(stdout(&o).contains("compatible with Patroni 4.1.5"), "{}", stdout(&o));
    assert_eq!(praetor(&["--no-such-flag"], &[]).status.code(), Some(2));
    assert_eq!(praetor(&["--dcs", "nope", "x.yml"], &[]).status.code(), Some(2));
    assert_eq!(praetor(&["--print"], &[]).status.code(), Some(2), "--print needs --validate-config");
}

#[test]
fn dcs_flag_overrides_the_section_choice() {
    let f = fixtures().join("samples/guide-zh-pg12.yml");
    let o = praetor(&["--validate-config", "-i", "--dcs", "zookeeper", f.to_str().expect("utf-8")], &[]);
    assert_eq!(o.status.code(), Some(1), "no zookeeper section");
    assert!(lines_for(&stderr(&o), "error:", "zookeeper.hosts").len() == 1, "{}", stderr(&o));
    let o = praetor(
        &["--validate-config", "-i", "--dcs", "plugin:/nonexistent/libdcs.so", f.to_str().expect("utf-8")],
        &[],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("warning: environment: plugin.path: /nonexistent/libdcs.so does not exist"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn busy_listen_port_is_an_environment_warning_unless_ignored() {
    let busy = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = busy.local_addr().expect("addr").port();
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("p.yml");
    let text = std::fs::read_to_string(fixtures().join("dir/10-member.yaml"))
        .expect("read")
        .replace("127.0.0.1:8008", &format!("127.0.0.1:{port}"));
    std::fs::write(&file, text).expect("write");
    let cluster = fixtures().join("dir/00-cluster.yml");
    let both = dir.path().join("conf");
    std::fs::create_dir(&both).expect("mkdir");
    std::fs::copy(&cluster, both.join("00-cluster.yml")).expect("copy");
    std::fs::copy(&file, both.join("10-member.yaml")).expect("copy");
    let o = praetor(&["--validate-config", both.to_str().expect("utf-8")], &[]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(
        err.contains(&format!("warning: environment: restapi.listen: port {port} is already in use")),
        "{err}"
    );
    let o = praetor(&["--validate-config", "-i", both.to_str().expect("utf-8")], &[]);
    assert!(!stderr(&o).contains("already in use"), "{}", stderr(&o));
}
