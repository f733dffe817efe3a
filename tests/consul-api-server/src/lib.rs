//! A model of Consul's HTTP API, written from HashiCorp's API documentation, for praetor's tests,
//! demo and compose files: the KV store (with blocking queries, CAS and locks), sessions (TTL,
//! behaviour, lock-delay), the parts of the agent API Patroni uses, and `status/leader`.
//!
//! State is kept in memory. A control API under `/_test/` (and the same operations as methods of
//! [`ConsulApiServer`]) lets tests expire a session now, inject errors or delays, and lose the
//! cluster leader. Every request and response can be logged to a JSON-lines transcript.
//!
//! It is checked against a client nobody here wrote: Patroni 4.1.5's Consul backend (see praetor's
//! `tests/it/consul.rs`, module `cluster`). Where Patroni and this model disagree, the model is wrong.

pub mod duration;
mod http;
pub mod store;

pub use store::{ApiError, Behavior, Fault, KvEntry, Options, PutOp, Session, State};

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// How to run a server.
#[derive(Clone, Debug)]
pub struct ServerOptions {
    /// Address to listen on (`127.0.0.1:0` picks a free port).
    pub listen: SocketAddr,
    /// Behaviour of the model.
    pub store: Options,
    /// Append every request/response as one JSON line to this file.
    pub transcript: Option<PathBuf>,
    /// Serve HTTPS instead of HTTP (Consul's `https` port with `verify_incoming` when a client CA is
    /// given: developer.hashicorp.com/consul/docs/security/encryption/mtls).
    pub tls: Option<TlsOptions>,
}

/// PEM material for HTTPS.
#[derive(Clone, Debug)]
pub struct TlsOptions {
    /// Server certificate chain.
    pub cert_pem: Vec<u8>,
    /// Server private key.
    pub key_pem: Vec<u8>,
    /// When set, clients must present a certificate signed by this CA.
    pub client_ca_pem: Option<Vec<u8>>,
}

fn tls_config(t: &TlsOptions) -> std::io::Result<rustls::ServerConfig> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let bad = |what: &str, e: &dyn std::fmt::Display| std::io::Error::other(format!("{what}: {e}"));
    let certs = CertificateDer::pem_slice_iter(&t.cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad("server certificate", &e))?;
    let key = PrivateKeyDer::from_pem_slice(&t.key_pem).map_err(|e| bad("server key", &e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| bad("TLS versions", &e))?;
    let builder = match &t.client_ca_pem {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in CertificateDer::pem_slice_iter(ca) {
                roots.add(c.map_err(|e| bad("client CA", &e))?).map_err(|e| bad("client CA", &e))?;
            }
            let v = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| bad("client verifier", &e))?;
            builder.with_client_cert_verifier(v)
        }
        None => builder.with_no_client_auth(),
    };
    builder.with_single_cert(certs, key).map_err(|e| bad("server certificate", &e))
}

async fn serve_tls(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    cfg: rustls::ServerConfig,
    mut stop: oneshot::Receiver<()>,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((tcp, _)) = accepted else { continue };
                let (acceptor, app) = (acceptor.clone(), app.clone());
                tokio::spawn(async move {
                    match acceptor.accept(tcp).await {
                        Ok(tls) => {
                            let svc = hyper_util::service::TowerToHyperService::new(app);
                            let _ = hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new())
                                .serve_connection(hyper_util::rt::TokioIo::new(tls), svc)
                                .await;
                        }
                        Err(e) => tracing::info!("TLS handshake failed: {e}"),
                    }
                });
            }
            _ = &mut stop => break,
        }
    }
}

impl Default for ServerOptions {
    fn default() -> ServerOptions {
        ServerOptions {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            store: Options::default(),
            transcript: None,
            tls: None,
        }
    }
}

/// State shared by the handlers.
pub(crate) struct Shared {
    state: Mutex<State>,
    changed: watch::Sender<u64>,
    transcript: Option<Mutex<std::fs::File>>,
    started: Instant,
}

impl Shared {
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        // A poisoned lock means a handler panicked in a failing test; the data is still usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Run a mutation and wake blocking queries.
    pub(crate) fn write<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        let (out, idx) = {
            let mut s = self.lock();
            let out = f(&mut s);
            (out, s.index)
        };
        self.changed.send_replace(idx);
        out
    }
}

/// A running server. Stops when dropped.
pub struct ConsulApiServer {
    addr: SocketAddr,
    scheme: &'static str,
    shared: Arc<Shared>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl ConsulApiServer {
    /// Bind and serve in the background on the current tokio runtime.
    pub async fn start(opts: ServerOptions) -> std::io::Result<ConsulApiServer> {
        let listener = tokio::net::TcpListener::bind(opts.listen).await?;
        ConsulApiServer::serve(listener, opts).await
    }

    /// Serve on an already bound listener.
    pub async fn serve(
        listener: tokio::net::TcpListener,
        opts: ServerOptions,
    ) -> std::io::Result<ConsulApiServer> {
        let addr = listener.local_addr()?;
        let transcript = match &opts.transcript {
            Some(p) => Some(Mutex::new(std::fs::OpenOptions::new().create(true).append(true).open(p)?)),
            None => None,
        };
        let (changed, _) = watch::channel(1);
        let shared = Arc::new(Shared {
            state: Mutex::new(State::new(opts.store)),
            changed,
            transcript,
            started: Instant::now(),
        });
        let tls = opts.tls.as_ref().map(tls_config).transpose()?;
        let scheme = if tls.is_some() { "https" } else { "http" };
        let (tx, rx) = oneshot::channel::<()>();
        let app = http::router(shared.clone());
        let expiry = shared.clone();
        let task = tokio::spawn(async move {
            let ticker = tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_millis(50));
                loop {
                    tick.tick().await;
                    let n = expiry.lock().expire_due(Instant::now());
                    if n > 0 {
                        let idx = expiry.lock().index;
                        expiry.changed.send_replace(idx);
                        tracing::info!(sessions = n, "invalidated expired sessions");
                    }
                }
            });
            match tls {
                Some(cfg) => serve_tls(listener, app, cfg, rx).await,
                None => {
                    let served = axum::serve(listener, app)
                        .with_graceful_shutdown(async move {
                            let _ = rx.await;
                        })
                        .await;
                    if let Err(e) = served {
                        tracing::error!("consul-api-server stopped: {e}");
                    }
                }
            }
            ticker.abort();
        });
        Ok(ConsulApiServer { addr, scheme, shared, shutdown: Some(tx), task: Some(task) })
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http(s)://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("{}://{}", self.scheme, self.addr)
    }

    /// Invalidate a session now, as if its TTL had run out. `false` when unknown.
    pub fn expire_session(&self, id: &str) -> bool {
        self.shared.write(|s| s.invalidate(id, Instant::now()))
    }

    /// Lose (`false`) or regain (`true`) the cluster leader.
    pub fn set_leader(&self, leader: bool) {
        self.shared.write(|s| s.set_leader(leader, Instant::now()));
    }

    /// Add a fault (error status and/or delay) for matching requests.
    pub fn inject_fault(&self, fault: Fault) {
        self.shared.lock().faults.push(fault);
    }

    /// Remove every fault.
    pub fn clear_faults(&self) {
        self.shared.lock().faults.clear();
    }

    /// Live sessions.
    pub fn sessions(&self) -> Vec<Session> {
        self.shared.lock().sessions.values().cloned().collect()
    }

    /// One KV entry.
    pub fn kv_entry(&self, key: &str) -> Option<KvEntry> {
        self.shared.lock().kv.get(key).cloned()
    }

    /// Every KV entry.
    pub fn kv_entries(&self) -> Vec<KvEntry> {
        self.shared.lock().kv.values().cloned().collect()
    }

    /// Registered services (Consul's `agent/services` objects).
    pub fn services(&self) -> Vec<serde_json::Value> {
        self.shared.lock().services.values().cloned().collect()
    }

    /// Stop serving and wait for the server task.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
        }
    }
}

impl Drop for ConsulApiServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}
