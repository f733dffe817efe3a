//! The composition root: configuration → telemetry → DCS → PostgreSQL controller → HA task → REST
//! server, plus signals. SIGTERM/SIGINT stop cleanly (a leader stops PostgreSQL and releases the
//! key with its last LSN in `/status`); SIGHUP and `POST /reload` reload the local configuration,
//! including the REST API certificates.
//!
//! Shutdown order (STYLE.md §3.8), each stage bounded: (1) the HA task runs its shutdown plan
//! (stop PostgreSQL, release the key, close the DCS) within `pg_ctl_timeout + 30 s`; (2) the REST
//! server stops within 5 s; (3) logs are flushed (stderr is unbuffered).

use crate::api::auth::Access;
use crate::api::server::{AppState, Endpoint, serve};
use crate::api::status::NodeStatus;
use crate::config::{Config, LoadOptions};
use crate::ha::command::{CommandServer, HaHandle, ScheduleStore};
use crate::ha::runner::{Ha, HaExit, HaShared, pg_settings};
use anyhow::Context;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

fn certfile(c: &Config) -> String {
    c.restapi.certfile.as_ref().map_or_else(|| "none: plain HTTP".into(), |p| p.display().to_string())
}

/// Run the agent until SIGTERM/SIGINT (Ok) or a fatal error (Err). `config_path` is re-read on
/// SIGHUP.
pub fn run(config: Config, config_path: Option<PathBuf>) -> anyhow::Result<()> {
    crate::telemetry::init(&config.log)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .context("start the tokio runtime")?;
    rt.block_on(run_async(config, config_path))
}

async fn run_async(config: Config, config_path: Option<PathBuf>) -> anyhow::Result<()> {
    info!(
        "praetor {} (Patroni {} compatible) starting: member {} of cluster {}",
        crate::types::PRAETOR_VERSION,
        crate::types::PATRONI_COMPAT_VERSION,
        config.name,
        config.scope
    );
    let dynamic = config.bootstrap.dcs.clone();
    if !crate::ha::runner::timing(&dynamic).demotes_before_lease_expiry() {
        warn!("loop_wait + 2*retry_timeout > ttl: a stuck primary may not demote before its lease expires");
    }
    let dcs = crate::dcs::factory::connect(config.dcs(), config.dcs_params())
        .await
        .context("connect to the DCS")?;
    let pg = crate::postgres::Postgres::new(pg_settings(&config, &dynamic)).context("set up PostgreSQL")?;
    let shared = Arc::new(HaShared::new());
    let raw_dcs = dcs.clone();
    let dcs = crate::dcs::timed::TimedDcs::wrap_with_deadline(
        dcs,
        shared.metrics.clone(),
        shared.at_risk.subscribe(),
        crate::ha::fence::LOST_DCS_CALL_BUDGET,
    );
    let (status_tx, status_rx) =
        tokio::sync::watch::channel(Arc::new(NodeStatus::initial(&config.scope, &config.name)));
    let stop = CancellationToken::new();
    let api_stop = CancellationToken::new();
    let (cmd, cmd_inbox) = HaHandle::channel();
    let reload_requested = Arc::new(tokio::sync::Notify::new());
    let schedule = ScheduleStore::open(ScheduleStore::path_for(&config.postgresql.data_dir));
    let (cmd_server, pg_inbox) = CommandServer::new(
        &config.name,
        dcs.clone(),
        shared.clone(),
        status_rx.clone(),
        schedule,
        reload_requested.clone(),
    );
    let cmd_task = tokio::spawn(cmd_server.run(cmd_inbox));
    let state = AppState::new(status_rx, shared.clone())
        .with_access(Access::from_config(&config.restapi))
        .with_commands(cmd);
    let endpoint = Arc::new(Endpoint::load(&config.restapi)?);
    let api = serve(&config.restapi, endpoint.clone(), state.clone(), api_stop.clone()).await?;
    let cfg = Arc::new(config);
    let (reload_tx, reload_rx) = tokio::sync::mpsc::unbounded_channel::<Config>();
    let ha = Ha::new(cfg.clone(), dcs, pg, shared.clone(), status_tx)
        .with_reload(reload_rx)
        .with_commands(pg_inbox)
        .with_dcs_probe(raw_dcs);
    let mut ha_task = tokio::spawn(ha.run(stop.clone()));

    let mut term = signal(SignalKind::terminate()).context("install the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("install the SIGINT handler")?;
    let mut hup = signal(SignalKind::hangup()).context("install the SIGHUP handler")?;
    let reload = || {
        let opts = LoadOptions {
            path: config_path.clone(),
            env: std::env::vars().collect(),
            dcs: None,
            strict: false,
        };
        match crate::config::load(&opts) {
            Ok(l) => {
                // Allowlist and credentials apply to the next request, certificates and
                // headers to the next connection; the listen address only at restart.
                state.set_access(Access::from_config(&l.config.restapi));
                match endpoint.reload(&l.config.restapi) {
                    Ok(true) => {
                        info!("REST API: TLS configuration reloaded (certificate {})", certfile(&l.config))
                    }
                    Ok(false) => {}
                    Err(e) => {
                        error!("REST API TLS not reloaded, the previous certificate is still served: {e}")
                    }
                }
                let _ = reload_tx.send(l.config);
                shared.wake.notify_one();
            }
            Err(e) => error!(
                "configuration reload failed, keeping the current one: {}",
                e.0.iter().map(|p| p.to_string()).collect::<Vec<_>>().join("; ")
            ),
        }
    };
    let exit = loop {
        tokio::select! {
            _ = term.recv() => { info!("received SIGTERM, shutting down"); break None; }
            _ = int.recv() => { info!("received SIGINT, shutting down"); break None; }
            _ = hup.recv() => reload(),
            _ = reload_requested.notified() => reload(),
            r = &mut ha_task => { break Some(r); }
        }
    };
    let result = match exit {
        Some(r) => r,
        None => {
            stop.cancel();
            shared.wake.notify_one();
            let deadline = cfg.postgresql.pg_ctl_timeout + Duration::from_secs(30);
            match tokio::time::timeout(deadline, &mut ha_task).await {
                Ok(r) => r,
                Err(_) => {
                    error!("the HA task did not stop within {deadline:?}");
                    ha_task.abort();
                    Ok(HaExit::Stopped)
                }
            }
        }
    };
    api_stop.cancel();
    cmd_task.abort();
    let _ = tokio::time::timeout(Duration::from_secs(5), api).await;
    match result {
        Ok(HaExit::Stopped) => {
            info!("praetor stopped");
            Ok(())
        }
        Ok(HaExit::Fatal(why)) => Err(anyhow::anyhow!(why)),
        Err(e) => Err(anyhow::anyhow!("the HA task failed: {e}")),
    }
}
