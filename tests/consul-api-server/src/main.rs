//! `consul-api-server --listen 127.0.0.1:8500`: the Consul API model as a process, for the demo and
//! compose files.

use clap::Parser;
use consul_api_server::{ConsulApiServer, Options, ServerOptions, TlsOptions, duration};
use std::net::SocketAddr;
use std::path::PathBuf;

/// A model of Consul's HTTP API (KV, sessions, blocking queries, agent services) kept in memory.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8500")]
    listen: SocketAddr,
    /// Append every request and response as JSON lines to this file.
    #[arg(long)]
    transcript: Option<PathBuf>,
    /// The agent's `session_ttl_min` (Go duration).
    #[arg(long, default_value = "10s")]
    session_ttl_min: String,
    /// Invalidate sessions this many TTLs after their last renewal (Consul: up to 2).
    #[arg(long, default_value_t = 2.0)]
    ttl_multiplier: f64,
    /// Datacenter name.
    #[arg(long, default_value = "dc1")]
    datacenter: String,
    /// Node name of the agent.
    #[arg(long, default_value = "consul-api-server")]
    node_name: String,
    /// Serve HTTPS with this PEM certificate (chain) ...
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// ... and this PEM private key.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Require client certificates signed by this PEM CA.
    #[arg(long, requires = "tls_cert")]
    tls_client_ca: Option<PathBuf>,
    /// Enforce ACLs with this single token.
    #[arg(long, env = "CONSUL_API_SERVER_TOKEN")]
    acl_token: Option<String>,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let a = Args::parse();
    let ttl_min = duration::parse(&a.session_ttl_min).map_err(|e| format!("--session-ttl-min: {e}"))?;
    if !(1.0..=2.0).contains(&a.ttl_multiplier) {
        return Err("--ttl-multiplier must be between 1 and 2".into());
    }
    let tls = match (&a.tls_cert, &a.tls_key) {
        (Some(c), Some(k)) => Some(TlsOptions {
            cert_pem: std::fs::read(c).map_err(|e| format!("--tls-cert {}: {e}", c.display()))?,
            key_pem: std::fs::read(k).map_err(|e| format!("--tls-key {}: {e}", k.display()))?,
            client_ca_pem: match &a.tls_client_ca {
                Some(p) => {
                    Some(std::fs::read(p).map_err(|e| format!("--tls-client-ca {}: {e}", p.display()))?)
                }
                None => None,
            },
        }),
        _ => None,
    };
    let server = ConsulApiServer::start(ServerOptions {
        listen: a.listen,
        transcript: a.transcript,
        tls,
        store: Options {
            session_ttl_min: ttl_min,
            ttl_multiplier: a.ttl_multiplier,
            datacenter: a.datacenter,
            node_name: a.node_name,
            acl_token: a.acl_token,
        },
    })
    .await?;
    tracing::info!("consul-api-server listening on {}", server.url());
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    server.stop().await;
    Ok(())
}
