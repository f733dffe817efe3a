//! The `praetor` agent's command line, matching `patroni`'s: `praetor [CONFIG]`,
//! `--validate-config [-i] [-p]`, `--generate-sample-config [FILE]`, `--version`, plus `--dcs`.
//!
//! Exit codes: 0 success, 1 invalid configuration (or the agent failed), 2 usage error.
//!
//! `--validate-config` prints every problem with its key path, one per line on stderr: file
//! problems (errors, and warnings prefixed `warning:`), then findings about this host, always
//! warnings labelled `warning: environment:` (see [`crate::config::check_environment`]). Unknown
//! keys are errors in this mode. With `--print` the local configuration (files + environment) is
//! written to stdout as YAML.

use crate::config::{self, Config, DcsChoice, LoadOptions, Problem};
use clap::Parser;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

/// `praetor`: high-availability agent for PostgreSQL, wire compatible with Patroni.
#[derive(Debug, Parser)]
#[command(
    name = "praetor",
    disable_version_flag = true,
    about = "High-availability agent for PostgreSQL, wire compatible with Patroni"
)]
pub struct Cli {
    /// Configuration file, or a directory of *.yml/*.yaml files merged in name order. Without it,
    /// PATRONI_CONFIGURATION or the PATRONI_* variables are used.
    #[arg(value_name = "CONFIG")]
    pub config: Option<PathBuf>,
    /// Check the configuration (and this host) and exit: 0 valid, 1 invalid.
    #[arg(long)]
    pub validate_config: bool,
    /// With --validate-config: do not check that the listen ports are free.
    #[arg(short = 'i', long, requires = "validate_config")]
    pub ignore_listen_port: bool,
    /// With --validate-config: print the local configuration as YAML.
    #[arg(short = 'p', long, requires = "validate_config")]
    pub print: bool,
    /// Write a commented sample configuration for this host to FILE (default: stdout).
    #[arg(long, value_name = "FILE", num_args = 0..=1, default_missing_value = "-")]
    pub generate_sample_config: Option<PathBuf>,
    /// Print the version and exit.
    #[arg(long)]
    pub version: bool,
    /// Use this DCS instead of the one chosen from the configuration's sections:
    /// etcd, etcd3, consul, zookeeper, or plugin:PATH.
    #[arg(long, value_name = "DCS")]
    pub dcs: Option<DcsChoice>,
}

/// Parse the process arguments and run. The whole `main`.
pub fn run_cli() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { ExitCode::from(2) } else { ExitCode::SUCCESS };
        }
    };
    let env = std::env::vars().collect();
    run(cli, env)
}

fn out(text: &str) -> bool {
    let mut o = std::io::stdout().lock();
    o.write_all(text.as_bytes()).and_then(|_| o.flush()).is_ok()
}

fn err_line(text: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{text}");
}

/// Run a parsed command line with an explicit environment.
pub fn run(cli: Cli, env: std::collections::BTreeMap<String, String>) -> ExitCode {
    if cli.version {
        out(&format!(
            "praetor {} (compatible with Patroni {})\n",
            crate::types::PRAETOR_VERSION,
            crate::types::PATRONI_COMPAT_VERSION
        ));
        return ExitCode::SUCCESS;
    }
    if let Some(file) = &cli.generate_sample_config {
        let text = config::sample::sample_config(&config::sample::SampleHost::detect());
        if file.as_os_str() == "-" {
            return if out(&text) { ExitCode::SUCCESS } else { ExitCode::from(1) };
        }
        return match std::fs::write(file, text) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                err_line(&format!("error: cannot write {}: {e}", file.display()));
                ExitCode::from(1)
            }
        };
    }
    let opts =
        LoadOptions { path: cli.config.clone(), env, dcs: cli.dcs.clone(), strict: cli.validate_config };
    if cli.validate_config {
        return validate(&opts, cli.ignore_listen_port, cli.print);
    }
    match config::load(&opts) {
        Ok(loaded) => {
            for w in &loaded.warnings {
                err_line(&w.to_string());
            }
            match run_agent(loaded.config) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    err_line(&format!("error: {e:#}"));
                    ExitCode::from(1)
                }
            }
        }
        Err(errors) => {
            print_problems(&errors.0);
            ExitCode::from(1)
        }
    }
}

fn print_problems(problems: &[Problem]) {
    let mut sorted: Vec<&Problem> = problems.iter().collect();
    sorted.sort_by_key(|p| p.severity);
    for p in sorted {
        err_line(&p.to_string());
    }
}

fn validate(opts: &LoadOptions, ignore_listen_port: bool, print: bool) -> ExitCode {
    match config::load(opts) {
        Ok(loaded) => {
            print_problems(&loaded.warnings);
            let env = config::check_environment(&loaded.config, ignore_listen_port);
            print_problems(&env);
            let n = loaded.warnings.len() + env.len();
            err_line(&format!("configuration is valid ({n} warning{})", if n == 1 { "" } else { "s" }));
            if print && !out(loaded.local_yaml.expose()) {
                return ExitCode::from(1);
            }
            ExitCode::SUCCESS
        }
        Err(errors) => {
            print_problems(&errors.0);
            let e = errors.errors().count();
            let w = errors.0.len() - e;
            err_line(&format!(
                "configuration is invalid: {e} error{}, {w} warning{}",
                if e == 1 { "" } else { "s" },
                if w == 1 { "" } else { "s" }
            ));
            ExitCode::from(1)
        }
    }
}

/// Run the HA agent with a validated configuration until it is told to stop.
pub fn run_agent(config: Config) -> anyhow::Result<()> {
    // The configuration path again, for SIGHUP reloads.
    let path = Cli::try_parse().ok().and_then(|c| c.config);
    crate::agent::run(config, path)
}
