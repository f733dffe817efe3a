//! Consul for the tests: the Consul API model (`tests/consul-api-server`) in-process on a free
//! port, and a real `consul agent -dev` when a `consul` binary is on PATH (no Debian package exists,
//! so it is skipped with a message otherwise — also in CI).
//!
//! [`ConsulFixture`] plugs either into the DCS contract suite.

use crate::dcs_contract::{Fixture, params, unique_scope};
use crate::support::{ChildGuard, TestDir, free_port, wait_for};
use async_trait::async_trait;
use consul_api_server::{ConsulApiServer, Options, ServerOptions};
use praetor::config::dcs::{ConsulConfig, DcsSection};
use praetor::dcs::{Dcs, DcsParams};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

/// The model with options suited to fast tests: `session_ttl_min` 1 s (real agents take it from
/// `session_ttl_min` in their configuration), sessions invalidated at 2×TTL as Consul does.
pub async fn start_model(opts: Options) -> ConsulApiServer {
    let port = free_port();
    ConsulApiServer::start(ServerOptions {
        listen: SocketAddr::from(([127, 0, 0, 1], port)),
        store: opts,
        transcript: None,
        tls: None,
    })
    .await
    .expect("start the Consul API model")
}

/// Options for the model in tests: `session_ttl_min` 1 s.
pub fn fast_options() -> Options {
    Options { session_ttl_min: Duration::from_secs(1), ..Options::default() }
}

/// A `consul:` section pointing at `url`.
pub fn section(url: &str) -> DcsSection {
    DcsSection::Consul(ConsulConfig { url: Some(url.to_string()), ..Default::default() })
}

/// A praetor Consul client from a section.
pub async fn connect(section: &DcsSection, p: DcsParams) -> Arc<dyn Dcs> {
    praetor::dcs::factory::connect(section, p).await.expect("connect to consul")
}

/// A real `consul agent -dev` on free loopback ports, stopped on drop.
pub struct ConsulAgent {
    _guard: ChildGuard,
    _dir: TestDir,
    http_port: u16,
}

impl ConsulAgent {
    /// Start an agent, or `None` (with a SKIP message) when no `consul` binary is on PATH.
    pub async fn start() -> Option<ConsulAgent> {
        let Some(bin) = which("consul") else {
            eprintln!(
                "SKIP: no `consul` binary on PATH; the Consul backend is tested against the Consul API model \
                 (tests/consul-api-server) instead"
            );
            return None;
        };
        let dir = TestDir::new("consul-agent");
        let http_port = free_port();
        let hcl = format!(
            r#"session_ttl_min = "1s"
ports {{ http = {http_port}
  dns = -1
  grpc = -1
  grpc_tls = -1
  server = {}
  serf_lan = {}
  serf_wan = {} }}"#,
            free_port(),
            free_port(),
            free_port()
        );
        let mut cmd = Command::new(bin);
        cmd.args(["agent", "-dev", "-bind", "127.0.0.1", "-client", "127.0.0.1", "-hcl", &hcl]);
        let guard = ChildGuard::spawn("consul", &mut cmd, &dir.join("consul.log"));
        let url = format!("http://127.0.0.1:{http_port}/v1/status/leader");
        let http = reqwest::Client::new();
        let up = wait_for(Duration::from_secs(30), || {
            let http = http.clone();
            let url = url.clone();
            async move {
                match http.get(&url).send().await {
                    Ok(r) => r.text().await.is_ok_and(|t| t.trim().len() > 2),
                    Err(_) => false,
                }
            }
        })
        .await;
        assert!(up, "consul agent -dev did not elect itself within 30 s\n{}", guard.log_tail(4000));
        Some(ConsulAgent { _guard: guard, _dir: dir, http_port })
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.http_port)
    }
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?.to_str()?.split(':').map(|d| PathBuf::from(d).join(name)).find(|p| p.is_file())
}

enum Backend {
    Model(ConsulApiServer),
    Agent(ConsulAgent),
}

/// A Consul (model or real agent) for the DCS contract suite; raw access over plain HTTP.
pub struct ConsulFixture {
    backend: Backend,
    url: String,
    http: reqwest::Client,
    scope: String,
}

impl ConsulFixture {
    /// The Consul API model.
    pub async fn model() -> Option<ConsulFixture> {
        let server = start_model(fast_options()).await;
        let url = server.url();
        Some(ConsulFixture {
            backend: Backend::Model(server),
            url,
            http: reqwest::Client::new(),
            scope: unique_scope("consul"),
        })
    }

    /// A real `consul agent -dev`, or `None` when not installed.
    pub async fn agent() -> Option<ConsulFixture> {
        let agent = ConsulAgent::start().await?;
        let url = agent.url();
        Some(ConsulFixture {
            backend: Backend::Agent(agent),
            url,
            http: reqwest::Client::new(),
            scope: unique_scope("consul"),
        })
    }

    /// The model server, when this fixture runs on it.
    pub fn model_server(&self) -> Option<&ConsulApiServer> {
        match &self.backend {
            Backend::Model(s) => Some(s),
            Backend::Agent(_) => None,
        }
    }

    /// The agent's base URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    fn kv_url(&self, full_key: &str) -> String {
        format!("{}/v1/kv/{}", self.url, full_key.trim_start_matches('/'))
    }
}

#[async_trait]
impl Fixture for ConsulFixture {
    fn scope(&self) -> String {
        self.scope.clone()
    }

    async fn client(&self, name: &str, ttl: Duration) -> Arc<dyn Dcs> {
        connect(&section(&self.url), params(&self.scope, name, ttl)).await
    }

    async fn raw_put(&self, full_key: &str, value: &str) {
        let r = self
            .http
            .put(self.kv_url(full_key))
            .body(value.to_string())
            .send()
            .await
            .expect("raw consul put");
        assert!(r.status().is_success(), "raw consul put: {}", r.status());
    }

    async fn raw_get(&self, full_key: &str) -> Option<String> {
        let r = self.http.get(format!("{}?raw", self.kv_url(full_key))).send().await.expect("raw consul get");
        if r.status() == reqwest::StatusCode::NOT_FOUND {
            return None;
        }
        assert!(r.status().is_success(), "raw consul get: {}", r.status());
        Some(r.text().await.expect("raw consul value"))
    }
}

pub use super::patroni::PATRONI_VERSION;

/// A venv with `patroni[consul,psycopg3]==4.1.5`; returns its `bin` directory (see
/// [`super::patroni::venv`]).
pub fn patroni_venv() -> Option<PathBuf> {
    super::patroni::venv("consul", &[&format!("patroni[consul,psycopg3]=={PATRONI_VERSION}")])
        .map(|v| v.join("bin"))
}
