//! Requests to a member's REST API, as patronictl's `PatroniRequest` sends them: the URL is the
//! member's `api_url` with the path replaced by the endpoint, JSON bodies, Basic auth from
//! `ctl.authentication` (else `restapi.authentication`), CA from `ctl.cacert` (else
//! `restapi.cafile`), client certificate `ctl.certfile`/`ctl.keyfile`, `-k` to skip verification.

use super::CtlError;
use super::config::CtlConfig;
use crate::dcs::model::Member;
use serde_json::Value;
use std::time::Duration;

/// An HTTP reply: status code and body text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    /// HTTP status.
    pub status: u16,
    /// Body as text.
    pub body: String,
}

/// The REST client shared by all commands of one invocation.
#[derive(Clone, Debug)]
pub struct RestClient {
    http: reqwest::Client,
    auth: Option<(String, String)>,
}

/// `scheme://netloc/<endpoint>` from a member's `api_url` (`Member.get_endpoint_url`); the
/// `api_url` itself when `endpoint` is `None`.
pub fn endpoint_url(api_url: &str, endpoint: Option<&str>) -> Result<String, String> {
    let mut url = url::Url::parse(api_url).map_err(|e| format!("invalid api_url {api_url:?}: {e}"))?;
    if let Some(ep) = endpoint {
        url.set_path(&format!("/{}", ep.trim_start_matches('/')));
        url.set_query(None);
    }
    Ok(url.to_string())
}

impl RestClient {
    /// Build the client from the ctl configuration.
    pub fn new(cfg: &CtlConfig) -> Result<RestClient, CtlError> {
        let fail = |what: &str, e: &dyn std::fmt::Display| CtlError::Failed(format!("{what}: {e}"));
        let mut b = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .user_agent(format!("Patroni/{} praetorctl", crate::types::PATRONI_COMPAT_VERSION))
            .danger_accept_invalid_certs(cfg.insecure);
        if let Some(ca) = &cfg.cacert {
            let pem = std::fs::read(ca).map_err(|e| fail(&format!("ctl.cacert {}", ca.display()), &e))?;
            for cert in reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| fail(&format!("ctl.cacert {}", ca.display()), &e))?
            {
                b = b.add_root_certificate(cert);
            }
        }
        if let Some(cert) = &cfg.certfile {
            if cfg.keyfile_password {
                return Err(CtlError::Failed(
                    "ctl.keyfile_password: encrypted client keys are not supported by praetorctl; use an unencrypted \
                     ctl.keyfile"
                        .into(),
                ));
            }
            let mut pem =
                std::fs::read(cert).map_err(|e| fail(&format!("ctl.certfile {}", cert.display()), &e))?;
            if let Some(key) = &cfg.keyfile {
                pem.push(b'\n');
                pem.extend(
                    std::fs::read(key).map_err(|e| fail(&format!("ctl.keyfile {}", key.display()), &e))?,
                );
            }
            let id = reqwest::Identity::from_pem(&pem).map_err(|e| fail("ctl.certfile/ctl.keyfile", &e))?;
            b = b.identity(id);
        }
        let http = b.build().map_err(|e| fail("cannot build the HTTP client", &e))?;
        let auth = cfg.auth.as_ref().map(|(u, p)| (u.clone(), p.expose().clone()));
        Ok(RestClient { http, auth })
    }

    /// `request_patroni(member, method, endpoint, data)`.
    pub async fn request(
        &self,
        member: &Member,
        method: reqwest::Method,
        endpoint: Option<&str>,
        body: Option<&Value>,
    ) -> Result<Reply, String> {
        let url = endpoint_url(&member.data.api_url, endpoint)?;
        self.request_url(&url, method, body).await
    }

    /// A request to an explicit URL.
    pub async fn request_url(
        &self,
        url: &str,
        method: reqwest::Method,
        body: Option<&Value>,
    ) -> Result<Reply, String> {
        let mut req = self.http.request(method, url);
        if let Some((u, p)) = &self.auth {
            req = req.basic_auth(u, Some(p));
        }
        if let Some(b) = body {
            req = req.header(reqwest::header::CONTENT_TYPE, "application/json").body(b.to_string());
        }
        let resp = req.send().await.map_err(|e| super::error_chain(&e))?;
        let status = resp.status().as_u16();
        let body = resp.text().await.map_err(|e| super::error_chain(&e))?;
        Ok(Reply { status, body })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_replaces_the_path_of_api_url() {
        assert_eq!(
            endpoint_url("http://10.0.0.1:8008/patroni", Some("switchover")).unwrap(),
            "http://10.0.0.1:8008/switchover"
        );
        assert_eq!(endpoint_url("https://h:8443/patroni", None).unwrap(), "https://h:8443/patroni");
        assert_eq!(endpoint_url("http://h:8008", Some("config")).unwrap(), "http://h:8008/config");
        assert!(endpoint_url("not a url", None).is_err());
    }

    #[tokio::test]
    async fn sends_json_bodies_with_basic_auth() {
        use axum::{Router, body::Bytes, http::HeaderMap, routing::post};
        let app = Router::new().route(
            "/switchover",
            post(|h: HeaderMap, b: Bytes| async move {
                let get = |k: &str| h.get(k).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
                (
                    axum::http::StatusCode::ACCEPTED,
                    format!(
                        "{}|{}|{}",
                        get("authorization"),
                        get("content-type"),
                        String::from_utf8_lossy(&b)
                    ),
                )
            }),
        );
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(l, app).await });
        let cfg =
            CtlConfig { auth: Some(("u".into(), crate::types::Secret("p".into()))), ..Default::default() };
        let c = RestClient::new(&cfg).unwrap();
        let url = endpoint_url(&format!("http://{addr}/patroni"), Some("switchover")).unwrap();
        let r = c
            .request_url(
                &url,
                reqwest::Method::POST,
                Some(&serde_json::json!({"leader": "pg0", "candidate": null})),
            )
            .await
            .unwrap();
        assert_eq!(r.status, 202);
        assert_eq!(r.body, "Basic dTpw|application/json|{\"leader\":\"pg0\",\"candidate\":null}");
        // a closed port is an error (the caller falls back to the DCS), not a reply
        assert!(c.request_url("http://127.0.0.1:1/switchover", reqwest::Method::POST, None).await.is_err());
    }
}
