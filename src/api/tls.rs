//! HTTPS for the REST API with rustls (PATRONI-COMPAT §3.5): `restapi.certfile` (PEM chain, may also
//! hold the key), `keyfile`, `keyfile_password` (encrypted PKCS#8), `cafile` (CA of client
//! certificates) and `verify_client` (`none` | `optional` | `required`).
//!
//! Owns: turning those files into a [`rustls::ServerConfig`]. Errors name the setting and the file.

use crate::config::validate::{RestApiConfig, VerifyClient};
use rustls::RootCertStore;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A TLS setting that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("restapi.{field} ({path}): {problem}")]
pub struct TlsError {
    /// The setting (`certfile`, `keyfile`, …).
    pub field: &'static str,
    /// The file.
    pub path: String,
    /// What is wrong.
    pub problem: String,
}

fn err(field: &'static str, path: &Path, problem: impl ToString) -> TlsError {
    TlsError { field, path: path.display().to_string(), problem: problem.to_string() }
}

fn read(field: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|e| err(field, path, format!("cannot read: {e}")))
}

const ENCRYPTED_PKCS8: &str = "-----BEGIN ENCRYPTED PRIVATE KEY-----";

/// The private key in `pem` (PKCS#8, PKCS#1 or SEC1; encrypted PKCS#8 with `password`).
pub fn private_key(
    field: &'static str,
    path: &Path,
    pem: &[u8],
    password: Option<&str>,
) -> Result<PrivateKeyDer<'static>, TlsError> {
    let text = String::from_utf8_lossy(pem);
    if let Some(start) = text.find(ENCRYPTED_PKCS8) {
        let end_marker = "-----END ENCRYPTED PRIVATE KEY-----";
        let end = text[start..]
            .find(end_marker)
            .map(|e| start + e + end_marker.len())
            .ok_or_else(|| err(field, path, "unterminated ENCRYPTED PRIVATE KEY block"))?;
        let password = password.ok_or_else(|| {
            err(field, path, "the key is encrypted and restapi.keyfile_password is not set")
        })?;
        let (_, doc) = pkcs8::Document::from_pem(&text[start..end])
            .map_err(|e| err(field, path, format!("bad ENCRYPTED PRIVATE KEY: {e}")))?;
        let info = pkcs8::EncryptedPrivateKeyInfo::try_from(doc.as_bytes())
            .map_err(|e| err(field, path, format!("bad ENCRYPTED PRIVATE KEY: {e}")))?;
        let plain = info.decrypt(password).map_err(|e| {
            err(field, path, format!("cannot decrypt the key with restapi.keyfile_password: {e}"))
        })?;
        return Ok(PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(plain.as_bytes().to_vec())));
    }
    if text.contains("Proc-Type: 4,ENCRYPTED") {
        return Err(err(
            field,
            path,
            "legacy encrypted PEM keys are not supported; convert with `openssl pkcs8 -topk8 -v2 aes-256-cbc`",
        ));
    }
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| err(field, path, format!("no private key found: {e}")))
}

/// Everything a [`rustls::ServerConfig`] is built from: the settings and the bytes of the files.
/// Equal inputs build the same configuration, so a reload that finds them equal changes nothing.
#[derive(PartialEq, Eq)]
struct TlsInputs {
    certfile: PathBuf,
    cert_pem: Vec<u8>,
    keyfile: Option<(PathBuf, Vec<u8>)>,
    password: Option<String>,
    verify_client: VerifyClient,
    /// `cafile` and its bytes, read only when `verify_client` is not `none`.
    ca: Option<(PathBuf, Vec<u8>)>,
}

impl TlsInputs {
    /// Read the files `restapi` names; `None` without `certfile` (plain HTTP).
    fn read(c: &RestApiConfig) -> Result<Option<TlsInputs>, TlsError> {
        let Some(certfile) = &c.certfile else {
            return Ok(None);
        };
        let cert_pem = read("certfile", certfile)?;
        let keyfile = match &c.keyfile {
            Some(k) => Some((k.clone(), read("keyfile", k)?)),
            None => None,
        };
        let ca = match c.verify_client {
            VerifyClient::None => None,
            _ => {
                let cafile = c.cafile.as_ref().ok_or_else(|| TlsError {
                    field: "cafile",
                    path: String::new(),
                    problem: "required when restapi.verify_client is optional or required".into(),
                })?;
                Some((cafile.clone(), read("cafile", cafile)?))
            }
        };
        Ok(Some(TlsInputs {
            certfile: certfile.clone(),
            cert_pem,
            keyfile,
            password: c.keyfile_password.as_ref().map(|p| p.expose().clone()),
            verify_client: c.verify_client,
            ca,
        }))
    }

    /// Build the server configuration (nothing is read from disk here).
    fn build(&self) -> Result<Arc<rustls::ServerConfig>, TlsError> {
        let certfile = &self.certfile;
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&self.cert_pem)
            .collect::<Result<_, _>>()
            .map_err(|e| err("certfile", certfile, format!("bad PEM: {e}")))?;
        if chain.is_empty() {
            return Err(err("certfile", certfile, "no CERTIFICATE found"));
        }
        let password = self.password.as_deref();
        let key = match &self.keyfile {
            Some((k, pem)) => private_key("keyfile", k, pem, password)?,
            None => private_key("certfile", certfile, &self.cert_pem, password)?,
        };
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| err("certfile", certfile, e))?;
        let builder = match (&self.ca, self.verify_client) {
            (None, _) | (_, VerifyClient::None) => builder.with_no_client_auth(),
            (Some((cafile, pem)), mode) => {
                let mut roots = RootCertStore::empty();
                for cert in CertificateDer::pem_slice_iter(pem) {
                    let cert = cert.map_err(|e| err("cafile", cafile, format!("bad PEM: {e}")))?;
                    roots.add(cert).map_err(|e| err("cafile", cafile, e))?;
                }
                if roots.is_empty() {
                    return Err(err("cafile", cafile, "no CERTIFICATE found"));
                }
                let v = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
                let v = if mode == VerifyClient::Optional { v.allow_unauthenticated() } else { v };
                builder.with_client_cert_verifier(v.build().map_err(|e| err("cafile", cafile, e))?)
            }
        };
        let (key_field, key_path) = match &self.keyfile {
            Some((k, _)) => ("keyfile", k),
            None => ("certfile", certfile),
        };
        let mut cfg = builder.with_single_cert(chain, key).map_err(|e| {
            err(key_field, key_path, format!("unusable with the certificate in restapi.certfile: {e}"))
        })?;
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(cfg))
    }
}

/// The rustls server configuration for `restapi`, or `None` without `certfile` (plain HTTP).
pub fn server_config(c: &RestApiConfig) -> Result<Option<Arc<rustls::ServerConfig>>, TlsError> {
    TlsInputs::read(c)?.map(|i| i.build()).transpose()
}

/// The REST server's TLS side, replaceable while it serves (SIGHUP, `POST /reload`). Each new
/// connection takes the acceptor in force when it is accepted; open connections keep theirs.
pub struct ServerTls {
    active: std::sync::RwLock<ActiveTls>,
}

#[derive(Clone)]
struct ActiveTls {
    inputs: Option<Arc<TlsInputs>>,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
}

impl ServerTls {
    /// From `restapi` at start-up: an unusable file is an error (the agent does not start).
    pub fn load(c: &RestApiConfig) -> Result<ServerTls, TlsError> {
        let active = Self::activate(TlsInputs::read(c)?, c)?;
        Ok(ServerTls { active: std::sync::RwLock::new(active) })
    }

    fn activate(inputs: Option<TlsInputs>, c: &RestApiConfig) -> Result<ActiveTls, TlsError> {
        let acceptor = match &inputs {
            Some(i) => {
                if c.ciphers.is_some() {
                    tracing::warn!(
                        "restapi.ciphers is ignored: rustls offers only its own safe cipher suites"
                    );
                }
                Some(tokio_rustls::TlsAcceptor::from(i.build()?))
            }
            None => None,
        };
        Ok(ActiveTls { inputs: inputs.map(Arc::new), acceptor })
    }

    /// The acceptor for a connection accepted now (`None`: plain HTTP).
    pub fn acceptor(&self) -> Option<tokio_rustls::TlsAcceptor> {
        self.active.read().map(|a| a.acceptor.clone()).unwrap_or_else(|p| p.into_inner().acceptor.clone())
    }

    /// Whether connections accepted now get TLS.
    pub fn is_tls(&self) -> bool {
        self.acceptor().is_some()
    }

    /// Re-read the settings and files of `c` (Patroni re-creates its SSL context on SIGHUP and
    /// `POST /reload` when the options changed or `certfile` holds another certificate). `Ok(true)`
    /// when connections from now on get the new configuration, `Ok(false)` when the settings and
    /// the files' contents are unchanged; on error the configuration in force stays.
    pub fn reload(&self, c: &RestApiConfig) -> Result<bool, TlsError> {
        let inputs = TlsInputs::read(c)?;
        let unchanged = {
            let a = self.active.read().unwrap_or_else(|p| p.into_inner());
            a.inputs.as_deref() == inputs.as_ref()
        };
        if unchanged {
            return Ok(false);
        }
        let new = Self::activate(inputs, c)?;
        let mut a = self.active.write().unwrap_or_else(|p| p.into_inner());
        *a = new;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    //! HTTPS end to end on loopback: a test CA signs the server and client certificates.

    use super::*;
    use crate::api::server::{AppState, Listener, router};
    use crate::api::status::NodeStatus;
    use crate::config::validate::RestApiConfig;
    use rcgen::{BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, KeyPair, SanType};
    use std::path::PathBuf;

    struct Pki {
        dir: tempfile::TempDir,
        ca_pem: String,
        client_pem: String,
        ca: rcgen::Certificate,
        ca_key: KeyPair,
    }

    impl Pki {
        fn path(&self, f: &str) -> PathBuf {
            self.dir.path().join(f)
        }

        /// A new server certificate for 127.0.0.1 signed by the CA: (certificate PEM, plain key
        /// PEM, key PEM encrypted with `pw`).
        fn server_cert(&self) -> (String, String, String) {
            let key = KeyPair::generate().expect("server key");
            let mut p = CertificateParams::new(vec!["localhost".into()]).expect("params");
            p.subject_alt_names.push(SanType::IpAddress("127.0.0.1".parse().expect("ip")));
            let cert = p.signed_by(&key, &self.ca, &self.ca_key).expect("server cert");
            let der = key.serialize_der();
            let info = pkcs8::PrivateKeyInfo::try_from(der.as_slice()).expect("pkcs8");
            let params =
                pkcs8::pkcs5::pbes2::Parameters::pbkdf2_sha256_aes256cbc(2048, b"saltsalt", &[7u8; 16])
                    .expect("pbes2");
            let enc = info.encrypt_with_params(params, "pw").expect("encrypt");
            let enc_pem = enc.to_pem("ENCRYPTED PRIVATE KEY", pkcs8::LineEnding::LF).expect("pem");
            (cert.pem(), key.serialize_pem(), enc_pem.to_string())
        }
    }

    /// CA, server certificate for 127.0.0.1 (key encrypted with `pw`), client certificate.
    fn pki() -> Pki {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca_key = KeyPair::generate().expect("ca key");
        let mut ca_params = CertificateParams::new(Vec::new()).expect("ca params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).expect("ca");

        let ckey = KeyPair::generate().expect("client key");
        let mut cp = CertificateParams::new(vec!["client".into()]).expect("params");
        cp.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let ccert = cp.signed_by(&ckey, &ca, &ca_key).expect("client cert");

        std::fs::write(dir.path().join("ca.pem"), ca.pem()).expect("write");
        let p = Pki {
            ca_pem: ca.pem(),
            client_pem: format!("{}{}", ccert.pem(), ckey.serialize_pem()),
            dir,
            ca,
            ca_key,
        };
        let (cert, plain, enc) = p.server_cert();
        std::fs::write(p.path("server.pem"), cert).expect("write");
        std::fs::write(p.path("server.key"), enc).expect("write");
        std::fs::write(p.path("server-plain.key"), plain).expect("write");
        p
    }

    fn restapi(p: &Pki, verify: VerifyClient) -> RestApiConfig {
        RestApiConfig {
            listen: "127.0.0.1:0".into(),
            connect_address: "127.0.0.1:8008".into(),
            authentication: None,
            certfile: Some(p.path("server.pem")),
            keyfile: Some(p.path("server.key")),
            keyfile_password: Some(crate::types::Secret("pw".to_string())),
            cafile: Some(p.path("ca.pem")),
            ciphers: None,
            verify_client: verify,
            allowlist: Vec::new(),
            allowlist_include_members: false,
            http_extra_headers: Default::default(),
            https_extra_headers: [("X-Test".to_string(), "tls".to_string())].into(),
            request_queue_size: 5,
            server_tokens: "original".into(),
        }
    }

    /// Serve on a free port; returns the base URL and the stop token.
    async fn start(c: &RestApiConfig) -> (String, tokio_util::sync::CancellationToken) {
        let (url, stop, _) = start_endpoint(c).await;
        (url, stop)
    }

    /// [`start`], also returning the endpoint to reload.
    async fn start_endpoint(
        c: &RestApiConfig,
    ) -> (String, tokio_util::sync::CancellationToken, Arc<crate::api::server::Endpoint>) {
        let (tx, rx) = tokio::sync::watch::channel(std::sync::Arc::new(NodeStatus::initial("demo", "pg0")));
        std::mem::forget(tx);
        let ha = std::sync::Arc::new(crate::ha::runner::HaShared::new());
        let state = AppState::new(rx, ha).with_access(crate::api::auth::Access::from_config(c));
        let endpoint = Arc::new(crate::api::server::Endpoint::load(c).expect("TLS files"));
        let l = Listener::bind_with(c, endpoint.clone()).await.expect("bind");
        let port = l.local_addr().expect("addr").port();
        let stop = tokio_util::sync::CancellationToken::new();
        tokio::spawn(crate::api::server::run(l, router(state), stop.clone()));
        (format!("https://127.0.0.1:{port}"), stop, endpoint)
    }

    fn client(p: &Pki, with_cert: bool) -> reqwest::Client {
        let mut b = reqwest::Client::builder()
            .use_rustls_tls()
            .add_root_certificate(reqwest::Certificate::from_pem(p.ca_pem.as_bytes()).expect("ca"))
            .timeout(std::time::Duration::from_secs(10));
        if with_cert {
            b = b.identity(reqwest::Identity::from_pem(p.client_pem.as_bytes()).expect("identity"));
        }
        b.build().expect("client")
    }

    const PING: &str = r#"{"name":"pg1"}"#;

    #[tokio::test]
    async fn https_with_an_encrypted_key_and_a_test_ca() {
        let p = pki();
        let (url, stop) = start(&restapi(&p, VerifyClient::None)).await;
        let r = client(&p, false).get(format!("{url}/patroni")).send().await.expect("GET over TLS");
        assert_eq!(r.status().as_u16(), 200);
        assert_eq!(r.headers().get("x-test").map(|v| v.as_bytes()), Some(&b"tls"[..]));
        let body: serde_json::Value = r.json().await.expect("json");
        assert_eq!(body["patroni"]["name"], "pg0");
        // Mutating call without client certificate is fine with verify_client: none (failsafe off: 502).
        let r = client(&p, false).post(format!("{url}/failsafe")).body(PING).send().await.expect("POST");
        assert_eq!(r.status().as_u16(), 502);
        stop.cancel();
    }

    #[tokio::test]
    async fn verify_client_required_refuses_a_client_without_certificate() {
        let p = pki();
        let (url, stop) = start(&restapi(&p, VerifyClient::Required)).await;
        let e = client(&p, false).get(format!("{url}/patroni")).send().await;
        assert!(e.is_err(), "handshake without a client certificate must fail: {e:?}");
        let r = client(&p, true).get(format!("{url}/patroni")).send().await.expect("GET with cert");
        assert_eq!(r.status().as_u16(), 200);
        let r = client(&p, true).post(format!("{url}/failsafe")).body(PING).send().await.expect("POST");
        assert_eq!(r.status().as_u16(), 502, "access granted, failsafe mode off");
        stop.cancel();
    }

    #[tokio::test]
    async fn verify_client_optional_requires_a_certificate_only_for_mutating_calls() {
        let p = pki();
        let (url, stop) = start(&restapi(&p, VerifyClient::Optional)).await;
        let r = client(&p, false).get(format!("{url}/patroni")).send().await.expect("GET");
        assert_eq!(r.status().as_u16(), 200);
        let r = client(&p, false).post(format!("{url}/failsafe")).body(PING).send().await.expect("POST");
        assert_eq!(r.status().as_u16(), 403);
        assert_eq!(r.text().await.expect("body"), "client certificate required");
        let r = client(&p, true).post(format!("{url}/failsafe")).body(PING).send().await.expect("POST");
        assert_eq!(r.status().as_u16(), 502);
        stop.cancel();
    }

    /// The DER of the certificate `http` was served on its connection to `url` (a new client
    /// opens a new connection; a reused one keeps its connection while it is idle in the pool).
    async fn served_by(http: &reqwest::Client, url: &str) -> Vec<u8> {
        let r = http.get(format!("{url}/patroni")).send().await.expect("GET over TLS");
        assert_eq!(r.status().as_u16(), 200);
        let der = r
            .extensions()
            .get::<reqwest::tls::TlsInfo>()
            .and_then(|i| i.peer_certificate())
            .expect("the server certificate")
            .to_vec();
        let _ = r.bytes().await;
        der
    }

    fn inspecting_client(p: &Pki) -> reqwest::Client {
        reqwest::Client::builder()
            .use_rustls_tls()
            .tls_info(true)
            .add_root_certificate(reqwest::Certificate::from_pem(p.ca_pem.as_bytes()).expect("ca"))
            .timeout(std::time::Duration::from_secs(10))
            .build()
            .expect("client")
    }

    fn der(pem: &str) -> Vec<u8> {
        CertificateDer::from_pem_slice(pem.as_bytes()).expect("certificate PEM").to_vec()
    }

    /// Patroni re-creates its SSL context on reload when `certfile` holds another certificate
    /// (same paths, new contents: cert-manager, certbot). New connections get the new certificate,
    /// an open connection keeps the old one; unusable new files (key of another certificate, no
    /// certificate, wrong password, missing key) are refused with the setting named and the
    /// certificate in force keeps being served. Without `certfile` the server speaks plain HTTP.
    #[tokio::test]
    async fn reload_serves_a_rotated_certificate_and_keeps_it_when_the_new_files_are_unusable() {
        let p = pki();
        let mut c = restapi(&p, VerifyClient::None);
        let (url, stop, endpoint) = start_endpoint(&c).await;
        let a = std::fs::read_to_string(p.path("server.pem")).expect("read");
        let open = inspecting_client(&p);
        assert_eq!(served_by(&open, &url).await, der(&a));
        assert!(!endpoint.reload(&c).expect("unchanged files"), "same settings and files: nothing to do");

        let (b, _, b_key) = p.server_cert();
        std::fs::write(p.path("server.pem"), &b).expect("write");
        std::fs::write(p.path("server.key"), &b_key).expect("write");
        assert!(endpoint.reload(&c).expect("rotated files"), "new contents at the same paths");
        assert_eq!(served_by(&inspecting_client(&p), &url).await, der(&b), "a new connection gets B");
        assert_eq!(served_by(&open, &url).await, der(&a), "the open connection keeps A");

        let (other, _, _) = p.server_cert();
        std::fs::write(p.path("server.pem"), &other).expect("write");
        let e = endpoint.reload(&c).expect_err("the key belongs to B");
        assert!(e.to_string().starts_with("restapi.keyfile"), "{e}");
        assert_eq!(served_by(&inspecting_client(&p), &url).await, der(&b));

        std::fs::write(p.path("server.pem"), "not a certificate\n").expect("write");
        let e = endpoint.reload(&c).expect_err("no certificate");
        assert!(
            e.to_string().starts_with("restapi.certfile") && e.to_string().contains("no CERTIFICATE"),
            "{e}"
        );
        assert_eq!(served_by(&inspecting_client(&p), &url).await, der(&b));

        std::fs::write(p.path("server.pem"), &b).expect("write");
        c.keyfile_password = Some(crate::types::Secret("wrong".to_string()));
        let e = endpoint.reload(&c).expect_err("wrong password");
        assert!(e.to_string().contains("cannot decrypt"), "{e}");
        c.keyfile_password = Some(crate::types::Secret("pw".to_string()));
        std::fs::remove_file(p.path("server.key")).expect("remove");
        let e = endpoint.reload(&c).expect_err("missing key file");
        assert!(e.to_string().starts_with("restapi.keyfile") && e.to_string().contains("cannot read"), "{e}");
        assert_eq!(served_by(&inspecting_client(&p), &url).await, der(&b));

        c.certfile = None;
        assert!(endpoint.reload(&c).expect("plain HTTP"));
        let plain = url.replace("https://", "http://");
        let r = reqwest::get(format!("{plain}/patroni")).await.expect("GET over plain HTTP");
        assert_eq!(r.status().as_u16(), 200);
        assert!(r.headers().get("x-test").is_none(), "https_extra_headers only over TLS");
        stop.cancel();
    }

    #[test]
    fn key_files_errors_name_the_setting() {
        let p = pki();
        let mut c = restapi(&p, VerifyClient::None);
        c.keyfile_password = None;
        let e = server_config(&c).expect_err("no password");
        assert!(e.to_string().starts_with("restapi.keyfile"), "{e}");
        assert!(e.to_string().contains("keyfile_password"), "{e}");
        c.keyfile_password = Some(crate::types::Secret("wrong".to_string()));
        let e = server_config(&c).expect_err("wrong password");
        assert!(e.to_string().contains("cannot decrypt"), "{e}");
        c.keyfile = Some(p.path("server-plain.key"));
        assert!(server_config(&c).expect("plain key").is_some());
        c.keyfile = Some(p.path("missing.key"));
        assert!(server_config(&c).expect_err("missing").to_string().contains("cannot read"));
        let mut c = restapi(&p, VerifyClient::Required);
        c.cafile = None;
        assert!(server_config(&c).expect_err("no ca").to_string().starts_with("restapi.cafile"));
        c.certfile = None;
        assert!(server_config(&c).expect("plain http").is_none());
    }
}
