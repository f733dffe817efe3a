//! A thin, typed client for the parts of Consul's HTTP API the backend needs: KV (with blocking
//! queries, CAS and locks), sessions, `agent/self` and agent service registration.
//!
//! Why not rs-consul: 0.15 (the newest) has no session API, does not percent-encode keys, rounds
//! durations to whole seconds and builds broken URLs with namespaces.
//!
//! One request is one attempt with its own timeout; retrying within `retry_timeout` is the caller's
//! business (see `ConsulDcs::retry`).

use serde::Deserialize;
use serde_json::Value;
use std::time::Duration;
use url::Url;

/// Why a Consul request failed.
#[derive(Debug, thiserror::Error)]
pub enum ConsulError {
    /// No answer: connection refused, reset, TLS failure or timeout.
    #[error("consul request failed: {0}")]
    Transport(String),
    /// Consul answered 500 "Invalid Session TTL …": the agent's `session_ttl_min` is larger than
    /// our TTL.
    #[error("consul rejected the session TTL: {0}")]
    InvalidSessionTtl(String),
    /// Consul answered 500 "invalid session …": the session used for `acquire` no longer exists.
    #[error("consul session is gone: {0}")]
    InvalidSession(String),
    /// Any other 5xx (no cluster leader, internal error).
    #[error("consul internal error {status}: {body}")]
    Internal {
        /// HTTP status.
        status: u16,
        /// Body text.
        body: String,
    },
    /// A 4xx other than the expected 404s (bad request, ACL denied).
    #[error("consul refused the request ({status}): {body}")]
    Refused {
        /// HTTP status.
        status: u16,
        /// Body text.
        body: String,
    },
    /// The answer could not be decoded.
    #[error("unexpected consul answer: {0}")]
    Decode(String),
}

impl ConsulError {
    /// Worth another attempt within `retry_timeout` (Patroni retries `ConsulInternalError` and
    /// connection errors, not the session errors, `P:dcs/consul.py Consul.__init__`).
    pub fn is_retryable(&self) -> bool {
        matches!(self, ConsulError::Transport(_) | ConsulError::Internal { .. })
    }
}

/// Read consistency (`consul.consistency`; developer.hashicorp.com/consul/api-docs/features/consistency).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Consistency {
    /// Leader-served, may be stale for a short window after a leader change.
    #[default]
    Default,
    /// Linearizable (`?consistent`).
    Consistent,
    /// Any server (`?stale`).
    Stale,
}

impl Consistency {
    /// Parse `default|consistent|stale`.
    pub fn parse(s: &str) -> Option<Consistency> {
        match s.trim().to_ascii_lowercase().as_str() {
            "" | "default" => Some(Consistency::Default),
            "consistent" => Some(Consistency::Consistent),
            "stale" => Some(Consistency::Stale),
            _ => None,
        }
    }
}

/// One KV entry as Consul returns it.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct KvPair {
    /// Full key.
    pub key: String,
    /// Decoded value (empty when Consul sent `null`).
    #[serde(deserialize_with = "b64_value", default)]
    pub value: Vec<u8>,
    /// Client flags.
    #[serde(default)]
    pub flags: u64,
    /// Index that created the key.
    #[serde(default)]
    pub create_index: u64,
    /// Index of the last change: the CAS version.
    #[serde(default)]
    pub modify_index: u64,
    /// Number of acquisitions.
    #[serde(default)]
    pub lock_index: u64,
    /// Session holding the lock.
    #[serde(default)]
    pub session: Option<String>,
}

fn b64_value<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
    use base64::Engine as _;
    match Option::<String>::deserialize(d)? {
        None => Ok(Vec::new()),
        Some(s) => base64::engine::general_purpose::STANDARD.decode(s).map_err(serde::de::Error::custom),
    }
}

/// The lock/compare part of a KV PUT.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PutOptions {
    /// `?cas=`: 0 = create only, else the expected `ModifyIndex`.
    pub cas: Option<u64>,
    /// `?acquire=<session>`.
    pub acquire: Option<String>,
    /// `?release=<session>`.
    pub release: Option<String>,
}

/// Where and how to reach the agent.
#[derive(Clone, Debug, Default)]
pub struct ClientConfig {
    /// `http(s)://host:port`.
    pub base: String,
    /// ACL token (`X-Consul-Token`).
    pub token: Option<String>,
    /// Datacenter (`?dc=`).
    pub dc: Option<String>,
    /// Verify the server certificate (default true).
    pub verify: bool,
    /// PEM CA bundle.
    pub cacert: Option<Vec<u8>>,
    /// PEM client certificate and key (concatenated).
    pub identity: Option<Vec<u8>>,
}

/// The client. Cheap to clone.
#[derive(Clone, Debug)]
pub struct ConsulClient {
    http: reqwest::Client,
    base: Url,
    token: Option<String>,
    dc: Option<String>,
}

/// A raw answer: status, `X-Consul-Index`, body.
struct Answer {
    status: u16,
    index: Option<u64>,
    body: Vec<u8>,
}

impl ConsulClient {
    /// Build a client; fails only on an unusable URL or TLS material.
    pub fn new(cfg: &ClientConfig) -> Result<ConsulClient, ConsulError> {
        let base = Url::parse(&cfg.base)
            .map_err(|e| ConsulError::Decode(format!("consul url {:?}: {e}", cfg.base)))?;
        let mut b = reqwest::Client::builder().user_agent(concat!("praetor/", env!("CARGO_PKG_VERSION")));
        if let Some(ca) = &cfg.cacert {
            for c in reqwest::Certificate::from_pem_bundle(ca)
                .map_err(|e| ConsulError::Decode(format!("cacert: {e}")))?
            {
                b = b.add_root_certificate(c);
            }
        }
        if let Some(id) = &cfg.identity {
            b = b.identity(
                reqwest::Identity::from_pem(id).map_err(|e| ConsulError::Decode(format!("cert/key: {e}")))?,
            );
        }
        if !cfg.verify && cfg.cacert.is_none() {
            // Patroni: `cert_reqs = CERT_REQUIRED if verify or ca_cert else CERT_NONE`.
            b = b.danger_accept_invalid_certs(true);
        }
        let http = b.build().map_err(|e| ConsulError::Transport(e.to_string()))?;
        Ok(ConsulClient { http, base, token: cfg.token.clone(), dc: cfg.dc.clone() })
    }

    /// `/v1/kv/<key>` with every key segment percent-encoded.
    fn kv_url(&self, key: &str) -> Url {
        let mut u = self.base.clone();
        {
            let mut seg = u.path_segments_mut().expect("http(s) URLs have a path");
            seg.pop_if_empty().push("v1").push("kv");
            seg.extend(key.split('/'));
        }
        u
    }

    fn url(&self, path: &[&str]) -> Url {
        let mut u = self.base.clone();
        {
            let mut seg = u.path_segments_mut().expect("http(s) URLs have a path");
            seg.pop_if_empty();
            seg.extend(path);
        }
        u
    }

    fn with_query(&self, mut u: Url, q: &[(&str, String)]) -> Url {
        {
            let mut p = u.query_pairs_mut();
            if let Some(dc) = &self.dc {
                p.append_pair("dc", dc);
            }
            for (k, v) in q {
                p.append_pair(k, v);
            }
        }
        if u.query() == Some("") {
            u.set_query(None);
        }
        u
    }

    async fn send(
        &self,
        method: reqwest::Method,
        url: Url,
        body: Option<Vec<u8>>,
        timeout: Duration,
    ) -> Result<Answer, ConsulError> {
        let mut req = self.http.request(method, url).timeout(timeout);
        if let Some(t) = &self.token {
            req = req.header("X-Consul-Token", t);
        }
        if let Some(b) = body {
            req = req.body(b);
        }
        let resp = req.send().await.map_err(|e| ConsulError::Transport(error_chain(&e)))?;
        let status = resp.status().as_u16();
        let index =
            resp.headers().get("x-consul-index").and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok());
        let body = resp.bytes().await.map_err(|e| ConsulError::Transport(error_chain(&e)))?.to_vec();
        if status >= 500 {
            // Patroni's `HTTPClient.response` classifies 500s by their text.
            let text = String::from_utf8_lossy(&body).trim().to_string();
            if text.starts_with("Invalid Session TTL") {
                return Err(ConsulError::InvalidSessionTtl(text));
            }
            if text.starts_with("invalid session") {
                return Err(ConsulError::InvalidSession(text));
            }
            return Err(ConsulError::Internal { status, body: text });
        }
        Ok(Answer { status, index, body })
    }

    fn refused(a: &Answer) -> ConsulError {
        ConsulError::Refused { status: a.status, body: String::from_utf8_lossy(&a.body).trim().to_string() }
    }

    fn consistency_param(c: Consistency) -> Vec<(&'static str, String)> {
        match c {
            Consistency::Default => vec![],
            Consistency::Consistent => vec![("consistent", "1".into())],
            Consistency::Stale => vec![("stale", "1".into())],
        }
    }

    /// `GET /v1/kv/<key>`: the index and the entry (`None` on 404). With `block = Some((index,
    /// wait))` this is a blocking query; the request timeout is then `wait` plus Consul's jitter
    /// (up to wait/16) plus a margin, as Patroni computes it (`wait + max(wait/15, 1s)`).
    pub async fn kv_get(
        &self,
        key: &str,
        consistency: Consistency,
        block: Option<(u64, Duration)>,
        timeout: Duration,
    ) -> Result<(u64, Option<KvPair>), ConsulError> {
        let mut q = Self::consistency_param(consistency);
        let timeout = match block {
            Some((index, wait)) => {
                q.push(("index", index.to_string()));
                q.push(("wait", format!("{}ms", wait.as_millis().max(1))));
                wait + (wait / 15).max(Duration::from_secs(1))
            }
            None => timeout,
        };
        let a = self.send(reqwest::Method::GET, self.with_query(self.kv_url(key), &q), None, timeout).await?;
        let index = a.index.ok_or_else(|| ConsulError::Decode("missing X-Consul-Index header".into()))?;
        match a.status {
            404 => Ok((index, None)),
            200 => {
                let mut list: Vec<KvPair> = serde_json::from_slice(&a.body)
                    .map_err(|e| ConsulError::Decode(format!("kv entry: {e}")))?;
                Ok((index, list.pop()))
            }
            _ => Err(Self::refused(&a)),
        }
    }

    /// `GET /v1/kv/<prefix>?recurse`: every entry under the prefix (empty on 404).
    pub async fn kv_list(
        &self,
        prefix: &str,
        consistency: Consistency,
        timeout: Duration,
    ) -> Result<(u64, Vec<KvPair>), ConsulError> {
        let mut q = vec![("recurse", "1".to_string())];
        q.extend(Self::consistency_param(consistency));
        let a =
            self.send(reqwest::Method::GET, self.with_query(self.kv_url(prefix), &q), None, timeout).await?;
        let index = a.index.unwrap_or(0);
        match a.status {
            404 => Ok((index, Vec::new())),
            200 => Ok((
                index,
                serde_json::from_slice(&a.body).map_err(|e| ConsulError::Decode(format!("kv list: {e}")))?,
            )),
            _ => Err(Self::refused(&a)),
        }
    }

    /// `PUT /v1/kv/<key>`: `true` when written, `false` when the CAS/lock condition failed.
    pub async fn kv_put(
        &self,
        key: &str,
        value: &[u8],
        opts: &PutOptions,
        timeout: Duration,
    ) -> Result<bool, ConsulError> {
        let mut q = Vec::new();
        if let Some(c) = opts.cas {
            q.push(("cas", c.to_string()));
        }
        if let Some(s) = &opts.acquire {
            q.push(("acquire", s.clone()));
        }
        if let Some(s) = &opts.release {
            q.push(("release", s.clone()));
        }
        let a = self
            .send(reqwest::Method::PUT, self.with_query(self.kv_url(key), &q), Some(value.to_vec()), timeout)
            .await?;
        Self::bool_answer(&a)
    }

    /// `DELETE /v1/kv/<key>[?recurse][&cas=]`.
    pub async fn kv_delete(
        &self,
        key: &str,
        recurse: bool,
        cas: Option<u64>,
        timeout: Duration,
    ) -> Result<bool, ConsulError> {
        let mut q = Vec::new();
        if recurse {
            q.push(("recurse", "1".to_string()));
        }
        if let Some(c) = cas {
            q.push(("cas", c.to_string()));
        }
        let a =
            self.send(reqwest::Method::DELETE, self.with_query(self.kv_url(key), &q), None, timeout).await?;
        Self::bool_answer(&a)
    }

    fn bool_answer(a: &Answer) -> Result<bool, ConsulError> {
        if a.status != 200 {
            return Err(Self::refused(a));
        }
        serde_json::from_slice::<bool>(&a.body)
            .map_err(|e| ConsulError::Decode(format!("expected true/false: {e}")))
    }

    /// `PUT /v1/session/create` with this JSON body; the new session ID.
    pub async fn session_create(&self, body: &Value, timeout: Duration) -> Result<String, ConsulError> {
        let url = self.with_query(self.url(&["v1", "session", "create"]), &[]);
        let a = self.send(reqwest::Method::PUT, url, Some(body.to_string().into_bytes()), timeout).await?;
        if a.status != 200 {
            return Err(Self::refused(&a));
        }
        #[derive(Deserialize)]
        struct Created {
            #[serde(rename = "ID")]
            id: String,
        }
        let c: Created =
            serde_json::from_slice(&a.body).map_err(|e| ConsulError::Decode(format!("session id: {e}")))?;
        Ok(c.id)
    }

    /// `PUT /v1/session/renew/<id>`: `false` when Consul no longer knows the session (404).
    pub async fn session_renew(&self, id: &str, timeout: Duration) -> Result<bool, ConsulError> {
        let url = self.with_query(self.url(&["v1", "session", "renew", id]), &[]);
        let a = self.send(reqwest::Method::PUT, url, None, timeout).await?;
        match a.status {
            200 => Ok(true),
            404 => Ok(false),
            _ => Err(Self::refused(&a)),
        }
    }

    /// `PUT /v1/session/destroy/<id>`.
    pub async fn session_destroy(&self, id: &str, timeout: Duration) -> Result<bool, ConsulError> {
        let url = self.with_query(self.url(&["v1", "session", "destroy", id]), &[]);
        let a = self.send(reqwest::Method::PUT, url, None, timeout).await?;
        Self::bool_answer(&a)
    }

    /// `GET /v1/agent/self`.
    pub async fn agent_self(&self, timeout: Duration) -> Result<Value, ConsulError> {
        let a = self.send(reqwest::Method::GET, self.url(&["v1", "agent", "self"]), None, timeout).await?;
        if a.status != 200 {
            return Err(Self::refused(&a));
        }
        serde_json::from_slice(&a.body).map_err(|e| ConsulError::Decode(format!("agent/self: {e}")))
    }

    /// `PUT /v1/agent/service/register`.
    pub async fn service_register(&self, body: &Value, timeout: Duration) -> Result<(), ConsulError> {
        let a = self
            .send(
                reqwest::Method::PUT,
                self.url(&["v1", "agent", "service", "register"]),
                Some(body.to_string().into_bytes()),
                timeout,
            )
            .await?;
        if a.status != 200 {
            return Err(Self::refused(&a));
        }
        Ok(())
    }

    /// `PUT /v1/agent/service/deregister/<id>` (the ID is percent-encoded, `/` included).
    pub async fn service_deregister(&self, id: &str, timeout: Duration) -> Result<bool, ConsulError> {
        let a = self
            .send(
                reqwest::Method::PUT,
                self.url(&["v1", "agent", "service", "deregister", id]),
                None,
                timeout,
            )
            .await?;
        match a.status {
            200 => Ok(true),
            404 => Ok(false),
            _ => Err(Self::refused(&a)),
        }
    }
}

fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_percent_encoded_per_segment() {
        let c = ConsulClient::new(&ClientConfig {
            base: "http://127.0.0.1:8500".into(),
            verify: true,
            ..Default::default()
        })
        .unwrap();
        assert_eq!(
            c.kv_url("service/pg/members/a b").as_str(),
            "http://127.0.0.1:8500/v1/kv/service/pg/members/a%20b"
        );
        assert_eq!(c.kv_url("service/pg/").as_str(), "http://127.0.0.1:8500/v1/kv/service/pg/");
        assert_eq!(
            c.url(&["v1", "agent", "service", "deregister", "pg/n1"]).as_str(),
            "http://127.0.0.1:8500/v1/agent/service/deregister/pg%2Fn1"
        );
    }

    #[test]
    fn null_values_decode_as_empty() {
        let l: Vec<KvPair> = serde_json::from_str(
            r#"[{"Key":"a","Value":null,"Flags":0,"CreateIndex":2,"ModifyIndex":3,"LockIndex":0},{"Key":"b","Value":"cGcw","Session":"s"}]"#,
        )
        .unwrap();
        assert!(l[0].value.is_empty());
        assert_eq!((l[1].value.as_slice(), l[1].session.as_deref()), (&b"pg0"[..], Some("s")));
    }
}
