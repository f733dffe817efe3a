//! Unit tests of loading and validation (YAML in, problems out).
use super::*;

const MINIMAL: &str = r#"
scope: demo
name: n1
restapi:
  listen: 127.0.0.1:8008
  connect_address: 10.0.0.1:8008
etcd3:
  hosts: 127.0.0.1:2379
postgresql:
  listen: 127.0.0.1:5432
  connect_address: 10.0.0.1:5432
  data_dir: /tmp/praetor-test/data
  authentication:
    superuser:
      username: postgres
      password: secret
    replication:
      username: replicator
      password: secret
"#;

fn load_yaml(yaml: &str) -> Result<Loaded, ConfigErrors> {
    load_str(yaml, &LoadOptions::default())
}

fn load_strict(yaml: &str) -> Result<Loaded, ConfigErrors> {
    load_str(yaml, &LoadOptions { strict: true, ..Default::default() })
}

fn with(extra: &str) -> String {
    format!("{MINIMAL}{extra}")
}

fn problems(r: &Result<Loaded, ConfigErrors>) -> Vec<Problem> {
    match r {
        Ok(l) => l.warnings.clone(),
        Err(e) => e.0.clone(),
    }
}

fn find<'a>(ps: &'a [Problem], path: &str) -> &'a Problem {
    ps.iter().find(|p| p.path == path).unwrap_or_else(|| panic!("no problem at {path}: {ps:#?}"))
}

#[test]
fn minimal_config_loads_clean() {
    let l = load_strict(MINIMAL).expect("valid");
    assert!(l.warnings.is_empty(), "{:?}", l.warnings);
    let c = &l.config;
    assert_eq!(c.name, "n1");
    assert_eq!(c.namespace, "/service");
    assert_eq!(c.postgresql.create_replica_methods, vec!["basebackup"]);
    assert_eq!(c.dcs().kind(), "etcd3");
    let p = c.dcs_params();
    assert_eq!(p.ttl.as_secs(), 30);
    assert_eq!((p.scope.as_str(), p.name.as_str()), ("demo", "n1"));
}

#[test]
fn pyyaml_style_values_are_accepted() {
    let l = load_yaml(&format!(
        "{}\ntags:\n  nofailover: \"yes\"\n  noloadbalance: \"on\"\n  custom: hello\nwatchdog:\n  mode: false\nbootstrap:\n  dcs:\n    ttl: \"30\"\n    synchronous_mode: \"on\"\n    member_slots_ttl: 10min\n",
        MINIMAL
    ))
    .expect("valid");
    let c = &l.config;
    assert!(c.tags.nofailover);
    assert_eq!(c.tags.failover_priority, 0);
    assert!(c.tags.noloadbalance);
    assert_eq!(c.tags.raw["custom"], serde_json::json!("hello"));
    assert!(!c.tags.member_tags().contains_key("clonefrom"));
    assert_eq!(c.watchdog.mode, validate::WatchdogMode::Off);
    assert_eq!(c.bootstrap.dcs.synchronous_mode, dynamic::SynchronousMode::On);
    assert_eq!(c.bootstrap.dcs.member_slots_ttl, 600);
}

#[test]
fn every_type_error_is_reported_with_its_path_and_value() {
    let r = load_yaml(&with(
        r#"
log:
  level: LOUD
  file_num: many
watchdog:
  safety_margin: lots
  device: [a, b]
bootstrap:
  dcs:
    loop_wait: soon
"#,
    ));
    let ps = problems(&r);
    assert!(r.is_err());
    assert!(find(&ps, "log.file_num").message.contains("\"many\""), "{ps:#?}");
    assert!(find(&ps, "watchdog.safety_margin").message.contains("\"lots\""));
    assert!(find(&ps, "watchdog.device").is_error());
    assert!(find(&ps, "log.level").message.contains("LOUD"));
    assert!(find(&ps, "bootstrap.dcs.loop_wait").is_error());
}

#[test]
fn two_errors_in_one_nested_struct_are_both_reported() {
    let yaml = MINIMAL.replace(
        "      password: secret\n    replication:",
        "      password: [1]\n      sslmode: {a: 1}\n    replication:",
    );
    let ps = problems(&load_yaml(&yaml));
    find(&ps, "postgresql.authentication.superuser.password");
    find(&ps, "postgresql.authentication.superuser.sslmode");
}

#[test]
fn missing_required_keys_are_errors() {
    let ps = problems(&load_yaml("scope: x\netcd3: {host: 127.0.0.1:2379}\n"));
    for path in [
        "name",
        "restapi.listen",
        "restapi.connect_address",
        "postgresql.listen",
        "postgresql.connect_address",
        "postgresql.data_dir",
        "postgresql.authentication.superuser.username",
        "postgresql.authentication.replication.username",
    ] {
        assert!(find(&ps, path).is_error(), "{path}");
    }
}

#[test]
fn typo_gets_a_suggestion_and_is_an_error_when_strict() {
    let yaml = with("  paramters:\n    max_connections: 100\n");
    let l = load_yaml(&yaml).expect("a warning only");
    let p = find(&l.warnings, "postgresql.paramters");
    assert_eq!(p.kind, ProblemKind::Unknown);
    assert!(p.message.contains("did you mean `postgresql.parameters`?"), "{}", p.message);
    assert!(p.message.contains("postgresql.paramters.max_connections"), "{}", p.message);
    let e = load_strict(&yaml).expect_err("strict");
    assert!(find(&e.0, "postgresql.paramters").is_error());
}

#[test]
fn key_in_the_wrong_section_says_where_it_belongs() {
    let l = load_yaml(&with("ttl: 30\n")).expect("warning");
    let p = find(&l.warnings, "ttl");
    assert!(p.message.contains("`bootstrap.dcs.ttl`"), "{}", p.message);
    let l = load_yaml(&with("  maximum_lag_on_failover: 5\n")).expect("warning");
    let p = find(&l.warnings, "postgresql.maximum_lag_on_failover");
    assert!(p.message.contains("bootstrap.dcs.maximum_lag_on_failover"), "{}", p.message);
    let l = load_yaml(&with("bootstrap:\n  dcs:\n    loop_wiat: 5\n")).expect("warning");
    assert!(find(&l.warnings, "bootstrap.dcs.loop_wiat").message.contains("bootstrap.dcs.loop_wait"));
}

#[test]
fn removed_keys_are_accepted_with_deprecation_warnings() {
    let l = load_strict(&with(
        "bootstrap:\n  users:\n    admin:\n      password: x\n  pg_hba:\n  - host all all 0.0.0.0/0 md5\n  dcs:\n    master_start_timeout: 60\n",
    ))
    .expect("valid");
    assert_eq!(find(&l.warnings, "bootstrap.users").kind, ProblemKind::Deprecated);
    assert_eq!(find(&l.warnings, "bootstrap.pg_hba").kind, ProblemKind::Deprecated);
    assert_eq!(l.config.bootstrap.pg_hba.len(), 1);
    assert_eq!(l.config.bootstrap.dcs.primary_start_timeout, 60);
}

#[test]
fn unsupported_sections_get_a_distinct_warning() {
    let l = load_strict(&with("kubernetes:\n  labels: {app: x}\ncitus:\n  group: 0\n  database: db\n"))
        .expect("valid");
    let p = find(&l.warnings, "kubernetes");
    assert_eq!(p.kind, ProblemKind::Unsupported);
    assert!(p.to_string().contains("ignored: not supported by praetor"), "{p}");
    find(&l.warnings, "citus");
}

#[test]
fn dcs_choice_follows_patroni_order_and_override() {
    let yaml = MINIMAL.replace(
        "etcd3:\n  hosts: 127.0.0.1:2379\n",
        "etcd:\n  host: 127.0.0.1:2379\nzookeeper:\n  hosts: [127.0.0.1:2181]\n",
    );
    let l = load_yaml(&yaml).expect("valid");
    match l.config.dcs() {
        dcs::DcsSection::Etcd3 { from_v2_section, .. } => assert!(*from_v2_section),
        other => panic!("{other:?}"),
    }
    assert!(l.warnings.iter().any(|p| p.path == "etcd" && p.message.contains("etcd3:")));
    assert!(l.warnings.iter().any(|p| p.message.contains("several DCS sections")));
    let l = load_str(&yaml, &LoadOptions { dcs: Some(DcsChoice::ZooKeeper), ..Default::default() })
        .expect("valid");
    assert_eq!(l.config.dcs().kind(), "zookeeper");
    let l = load_str(
        &yaml,
        &LoadOptions { dcs: Some("plugin:/x/libdcs.so".parse().expect("parses")), ..Default::default() },
    )
    .expect("valid");
    match l.config.dcs() {
        dcs::DcsSection::Plugin(p) => {
            assert_eq!(p.path.as_deref(), Some(std::path::Path::new("/x/libdcs.so")))
        }
        other => panic!("{other:?}"),
    }
    let ps = problems(&load_yaml(&MINIMAL.replace("etcd3:\n  hosts: 127.0.0.1:2379\n", "")));
    assert!(ps.iter().any(|p| p.is_error() && p.message.contains("no DCS section")));
}

#[test]
fn env_overrides_patch_the_file() {
    let env: BTreeMap<String, String> = [
        ("PATRONI_NAME", "from-env"),
        ("PATRONI_POSTGRESQL_DATA_DIR", "/srv/pg"),
        ("PATRONI_REPLICATION_PASSWORD", "envpw"),
        ("PATRONI_ETCD3_HOSTS", "10.1.1.1:2379,10.1.1.2:2379"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let l = load_str(MINIMAL, &LoadOptions { env, ..Default::default() }).expect("valid");
    assert_eq!(l.config.name, "from-env");
    assert_eq!(l.config.postgresql.data_dir, std::path::PathBuf::from("/srv/pg"));
    assert_eq!(
        l.config.postgresql.authentication.replication.password.as_ref().map(|s| s.expose().as_str()),
        Some("envpw")
    );
    assert_eq!(l.config.postgresql.authentication.replication.username, "replicator");
    match l.config.dcs() {
        dcs::DcsSection::Etcd3 { config, .. } => assert_eq!(config.hosts.len(), 2),
        other => panic!("{other:?}"),
    }
}

#[test]
fn patroni_configuration_env_is_used_without_a_path() {
    let env: BTreeMap<String, String> =
        [("PATRONI_CONFIGURATION".to_string(), MINIMAL.to_string())].into_iter().collect();
    let l = load(&LoadOptions { env, ..Default::default() }).expect("valid");
    assert_eq!(l.config.scope, "demo");
}

#[test]
fn directory_files_merge_in_name_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("10-base.yml"), MINIMAL).expect("write");
    std::fs::write(
        dir.path().join("20-override.yaml"),
        "name: n2\npostgresql:\n  parameters:\n    work_mem: 8MB\n",
    )
    .expect("write");
    std::fs::write(dir.path().join("README.txt"), "not yaml: [").expect("write");
    let l = load(&LoadOptions { path: Some(dir.path().to_path_buf()), ..Default::default() }).expect("valid");
    assert_eq!(l.config.name, "n2");
    assert_eq!(l.config.postgresql.connect_address, "10.0.0.1:5432");
    assert_eq!(l.config.postgresql.parameters["work_mem"], serde_json::json!("8MB"));
}

#[test]
fn replica_method_sections_are_not_unknown_keys() {
    let l = load_strict(&with(
        "  create_replica_methods: [wal_g, basebackup]\n  wal_g:\n    command: wal-g backup-fetch\n    no_leader: on\n    keep_data: true\n  basebackup:\n    checkpoint: fast\n    max-rate: 100M\n",
    ))
    .expect("valid");
    let m = &l.config.postgresql.replica_methods["wal_g"];
    assert_eq!(m.command.as_deref(), Some("wal-g backup-fetch"));
    assert!(m.no_leader && m.keep_data);
    assert_eq!(l.config.postgresql.basebackup.len(), 2);
}

#[test]
fn custom_bootstrap_method_is_read() {
    let l = load_strict(&with(
        "bootstrap:\n  method: clone\n  clone:\n    command: /bin/clone.sh\n    recovery_conf:\n      restore_command: cp x y\n    target: latest\n",
    ))
    .expect("valid");
    match &l.config.bootstrap.method {
        validate::BootstrapMethod::Custom(c) => {
            assert_eq!(c.command, "/bin/clone.sh");
            assert_eq!(c.params.get("target").map(String::as_str), Some("latest"));
            assert!(c.recovery_conf.is_some());
        }
        other => panic!("{other:?}"),
    }
    let ps = problems(&load_yaml(&with("bootstrap:\n  method: missing\n")));
    assert!(find(&ps, "bootstrap.missing").is_error());
}

#[test]
fn bootstrap_dcs_timeouts_are_adjusted_with_a_warning() {
    let l = load_yaml(&with("bootstrap:\n  dcs:\n    ttl: 10\n    loop_wait: 10\n    retry_timeout: 10\n"))
        .expect("valid");
    let d = &l.config.bootstrap.dcs;
    assert!(d.loop_wait + 2 * d.retry_timeout <= d.ttl);
    assert!(l.warnings.iter().any(|p| p.kind == ProblemKind::Adjusted));
    let json: serde_json::Value = serde_json::from_str(&d.to_json()).expect("json");
    assert_eq!(json["ttl"], serde_json::json!(10));
    assert_eq!(json["loop_wait"], serde_json::json!(d.loop_wait));
}

#[test]
fn numeric_passwords_are_read_as_text() {
    let yaml = MINIMAL
        .replace(
            "etcd3:\n  hosts: 127.0.0.1:2379\n",
            "etcd3:\n  hosts: 127.0.0.1:2379\n  username: root\n  password: 123456\n",
        )
        .replace("password: secret", "password: 123456");
    let l = load_yaml(&yaml).expect("valid");
    assert_eq!(
        l.config.postgresql.authentication.superuser.password.as_ref().map(|p| p.expose().as_str()),
        Some("123456")
    );
    match l.config.dcs() {
        dcs::DcsSection::Etcd3 { config, .. } => {
            assert_eq!(config.password.as_ref().map(|p| p.expose().as_str()), Some("123456"))
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn local_settings_win_over_dynamic_except_dynamic_only_ones() {
    // config.py _build_effective_configuration: local postgresql.* wins, use_slots is global only
    let l = load_yaml(&with("  use_pg_rewind: false\n  pg_hba:\n  - local all all trust\n  parameters:\n    work_mem: 16MB\n    max_connections: 999\n")).expect("valid");
    let c = &l.config;
    let (dynamic, _) = DynamicConfig::from_json(&serde_json::json!({
        "ttl": 20, "loop_wait": 5, "retry_timeout": 5,
        "postgresql": {"use_pg_rewind": true, "use_slots": false, "pg_hba": ["host all all 0.0.0.0/0 md5"], "pg_ident": ["m u u"],
                       "parameters": {"work_mem": "4MB", "max_connections": 300}}
    }));
    assert!(!c.effective_use_pg_rewind(&dynamic));
    assert_eq!(c.effective_pg_hba(&dynamic), Some(&["local all all trust".to_string()][..]));
    assert_eq!(c.effective_pg_ident(&dynamic), Some(&["m u u".to_string()][..]));
    let (params, _) = c.effective_parameters(&dynamic);
    assert_eq!(params["work_mem"], serde_json::json!("16MB"));
    assert_eq!(params["max_connections"], serde_json::json!(300));
    assert!(!dynamic.postgresql.use_slots);
    let p = c.dcs_params_with(&dynamic);
    assert_eq!((p.ttl.as_secs(), p.loop_wait.as_secs(), p.retry_timeout.as_secs()), (20, 5, 5));
    assert!(l.warnings.iter().any(|w| w.path == "postgresql.parameters.max_connections"));
}

#[test]
fn legacy_layouts_are_converted_with_warnings() {
    let yaml = r#"
scope: demo
restapi:
  listen: 127.0.0.1:8008
  connect_address: 10.0.0.1:8008
  auth: admin:pw
etcd3: {host: 127.0.0.1:2379}
postgresql:
  name: old-name
  listen: 127.0.0.1:5432
  connect_address: 10.0.0.1:5432
  data_dir: /tmp/x
  superuser: {username: postgres, password: a}
  replication: {username: repl, password: b}
  create_replica_methods: [custom]
  custom:
    command: /bin/true
    no_master: 1
"#;
    let l = load_strict(yaml).expect("valid");
    assert_eq!(l.config.name, "old-name");
    assert_eq!(l.config.postgresql.authentication.replication.username, "repl");
    assert_eq!(l.config.restapi.authentication.as_ref().map(|a| a.username.as_str()), Some("admin"));
    for path in [
        "postgresql.name",
        "postgresql.superuser",
        "postgresql.replication",
        "restapi.auth",
        "postgresql.custom.no_master",
    ] {
        assert_eq!(find(&l.warnings, path).kind, ProblemKind::Deprecated, "{path}");
    }
    assert_eq!(
        l.config.postgresql.replica_methods["custom"].params.get("no_master").map(String::as_str),
        Some("1")
    );
}

#[test]
fn duplicate_keys_keep_the_last_value_like_pyyaml() {
    let l = load_yaml(&format!("{MINIMAL}name: n2\nlog:\n  mode: 0640\n")).expect("valid");
    assert_eq!(l.config.name, "n2");
    assert_eq!(find(&l.warnings, "name").kind, ProblemKind::Invalid);
    assert_eq!(l.config.log.mode, Some(0o640), "a leading zero is octal, as in YAML 1.1");
}
