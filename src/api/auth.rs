//! Access control of the mutating endpoints (Patroni `RestApiServer.check_access`, PATRONI-COMPAT §3.5),
//! applied in Patroni's order: source address against `restapi.allowlist` (plus the members'
//! `api_url` hosts with `allowlist_include_members`) → 403 `Access is denied`; a client certificate
//! when HTTPS runs with `verify_client: optional|required` → 403 `client certificate required`;
//! `restapi.authentication` (HTTP Basic, compared in constant time) → 401 with
//! `WWW-Authenticate: Basic realm="Patroni"`.
//!
//! GET routes are never checked. Wrap every mutating route with [`mutating`] (or
//! [`mutating_without_members`] for `POST /failsafe`, which Patroni checks without the members'
//! addresses):
//!
//! ```ignore
//! router.merge(auth::mutating(Router::new().route("/switchover", post(switchover)), &state))
//! ```
//!
//! Owns: the access decision only. The connection facts it needs ([`ConnInfo`]: peer address, client
//! certificate) are put on every request by the server's accept loop.

use super::server::AppState;
use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::Response;
use base64::Engine;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use subtle::ConstantTimeEq;

/// What the accept loop knows about the connection a request came on (a request extension).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnInfo {
    /// The client's address.
    pub peer: SocketAddr,
    /// The connection is TLS.
    pub tls: bool,
    /// The client presented a certificate that the server verified.
    pub client_cert: bool,
}

/// An IP network of the allowlist (`10.0.0.0/8`, or a single address).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

impl IpNet {
    /// A single address.
    pub fn host(addr: IpAddr) -> IpNet {
        IpNet { addr, prefix: if addr.is_ipv4() { 32 } else { 128 } }
    }

    /// Parse `addr/prefix` (host bits may be set, as Python's `ip_network(v, strict=False)` allows).
    pub fn parse_cidr(s: &str) -> Result<IpNet, String> {
        let (a, p) = s.split_once('/').ok_or_else(|| format!("{s:?} is not a network"))?;
        let addr: IpAddr = a.trim().parse().map_err(|e| format!("{s:?}: {e}"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix: u8 = p.trim().parse().map_err(|_| format!("{s:?}: bad prefix length"))?;
        if prefix > max {
            return Err(format!("{s:?}: prefix length above {max}"));
        }
        Ok(IpNet { addr, prefix })
    }

    /// `ip` is inside this network (IPv4-mapped IPv6 clients match IPv4 networks).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.prefix)).unwrap_or(0);
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(self.prefix)).unwrap_or(0);
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

/// Resolve `host` (an address or a name) to networks of one address each; `[]` (logged) when it does
/// not resolve.
fn resolve(host: &str, port: u16) -> Vec<IpNet> {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = host.parse::<IpAddr>() {
        return vec![IpNet::host(ip)];
    }
    match (host, port).to_socket_addrs() {
        Ok(it) => it.map(|sa| IpNet::host(sa.ip())).collect(),
        Err(e) => {
            tracing::error!("Failed to resolve {host}: {e}");
            Vec::new()
        }
    }
}

/// The access rules from `restapi.*`, resolved once (hostnames of the allowlist at start, as Patroni
/// does on load).
#[derive(Clone, Debug, Default)]
pub struct Access {
    /// `base64(user:password)`, compared with the `Authorization: Basic` value.
    auth_key: Option<Vec<u8>>,
    allowlist: Vec<IpNet>,
    include_members: bool,
    /// HTTPS with `verify_client: optional|required`.
    client_cert_required: bool,
}

impl Access {
    /// No checks (no `restapi.authentication`, no allowlist).
    pub fn open() -> Access {
        Access::default()
    }

    /// From the validated `restapi` section. Invalid allowlist entries are logged and skipped
    /// (Patroni does the same).
    pub fn from_config(c: &crate::config::validate::RestApiConfig) -> Access {
        use crate::config::validate::VerifyClient;
        let mut allowlist = Vec::new();
        for v in &c.allowlist {
            if v.contains('/') {
                match IpNet::parse_cidr(v) {
                    Ok(n) => allowlist.push(n),
                    Err(e) => tracing::error!("Invalid value in restapi.allowlist: {e}"),
                }
            } else {
                allowlist.extend(resolve(v, 8080));
            }
        }
        Access {
            auth_key: c.authentication.as_ref().map(|a| basic_key(&a.username, a.password.expose())),
            allowlist,
            include_members: c.allowlist_include_members,
            client_cert_required: c.certfile.is_some()
                && matches!(c.verify_client, VerifyClient::Optional | VerifyClient::Required),
        }
    }

    /// Require `user`/`password` (tests and callers without a configuration).
    pub fn with_basic(mut self, user: &str, password: &str) -> Access {
        self.auth_key = Some(basic_key(user, password));
        self
    }

    /// Allow only these networks (plus the members' addresses when `include_members`).
    pub fn with_allowlist(mut self, nets: Vec<IpNet>, include_members: bool) -> Access {
        self.allowlist = nets;
        self.include_members = include_members;
        self
    }

    /// Require a client certificate on mutating calls.
    pub fn with_client_cert_required(mut self, required: bool) -> Access {
        self.client_cert_required = required;
        self
    }

    /// The members' addresses matter for this request (`allowlist_include_members`, and the
    /// endpoint checks members).
    pub fn uses_members(&self, check_members: bool) -> bool {
        check_members && self.include_members
    }

    /// Patroni's decision for one request: `None` when allowed, else the refusal.
    /// `member_nets` are the addresses of the members' `api_url` hosts (see [`members_nets`]),
    /// only consulted when [`Access::uses_members`].
    pub fn check(
        &self,
        conn: Option<&ConnInfo>,
        authorization: Option<&str>,
        check_members: bool,
        member_nets: &[IpNet],
    ) -> Option<Refusal> {
        let check_members = self.uses_members(check_members);
        if !self.allowlist.is_empty() || check_members {
            let member_nets = if check_members { member_nets } else { &[] };
            let allowed = conn.is_some_and(|c| {
                let ip = c.peer.ip();
                self.allowlist.iter().chain(member_nets.iter()).any(|n| n.contains(ip))
            });
            if !allowed {
                return Some(Refusal::AccessDenied);
            }
        }
        if self.client_cert_required && !conn.is_some_and(|c| c.client_cert) {
            return Some(Refusal::ClientCertificateRequired);
        }
        if let Some(key) = &self.auth_key {
            let Some(h) = authorization else {
                return Some(Refusal::NoAuthHeader);
            };
            let ok = h.strip_prefix("Basic ").is_some_and(|given| bool::from(given.as_bytes().ct_eq(key)));
            if !ok {
                return Some(Refusal::NotAuthenticated);
            }
        }
        None
    }
}

fn basic_key(user: &str, password: &str) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}")).into_bytes()
}

/// The addresses of the hosts of these `api_url`s (names resolved: blocking, call off the
/// async workers).
pub fn members_nets(api_urls: &[String]) -> Vec<IpNet> {
    api_urls.iter().flat_map(|u| api_url_nets(u)).collect()
}

/// The networks of a member's `api_url` host (`[]` when it does not parse).
fn api_url_nets(api_url: &str) -> Vec<IpNet> {
    match url::Url::parse(api_url) {
        Ok(u) => match u.host_str() {
            Some(h) => resolve(h, u.port_or_known_default().unwrap_or(80)),
            None => Vec::new(),
        },
        Err(e) => {
            tracing::debug!("Failed to parse url {api_url}: {e}");
            Vec::new()
        }
    }
}

/// Why a mutating call is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Source address not in the allowlist (403).
    AccessDenied,
    /// HTTPS with `verify_client` set and no client certificate (403).
    ClientCertificateRequired,
    /// Authentication configured, no `Authorization` header (401).
    NoAuthHeader,
    /// Wrong credentials or scheme (401).
    NotAuthenticated,
}

impl Refusal {
    /// Patroni's response.
    pub fn response(self) -> Response {
        let (code, body) = match self {
            Refusal::AccessDenied => (StatusCode::FORBIDDEN, "Access is denied"),
            Refusal::ClientCertificateRequired => (StatusCode::FORBIDDEN, "client certificate required"),
            Refusal::NoAuthHeader => (StatusCode::UNAUTHORIZED, "no auth header received"),
            Refusal::NotAuthenticated => (StatusCode::UNAUTHORIZED, "not authenticated"),
        };
        let mut r = Response::new(Body::from(body));
        *r.status_mut() = code;
        r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html"));
        if code == StatusCode::UNAUTHORIZED {
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"Patroni\""));
        }
        r
    }
}

async fn check(app: &AppState, req: Request, next: Next, check_members: bool) -> Response {
    let conn = req.extensions().get::<ConnInfo>().copied();
    let authz = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    let access = app.access();
    let mut member_nets = Vec::new();
    if access.uses_members(check_members) {
        let urls: Vec<String> = app
            .ha
            .dcs_view()
            .map(|v| v.cluster.members.iter().map(|m| m.data.api_url.clone()).collect())
            .unwrap_or_default();
        member_nets = tokio::task::spawn_blocking(move || members_nets(&urls)).await.unwrap_or_default();
    }
    let refusal = access.check(conn.as_ref(), authz, check_members, &member_nets);
    match refusal {
        Some(r) => {
            tracing::info!(peer = ?conn.map(|c| c.peer), "refused {} {}: {r:?}", req.method(), req.uri().path());
            r.response()
        }
        None => next.run(req).await,
    }
}

async fn check_access(State(app): State<AppState>, req: Request, next: Next) -> Response {
    check(&app, req, next, true).await
}

async fn check_access_without_members(State(app): State<AppState>, req: Request, next: Next) -> Response {
    check(&app, req, next, false).await
}

/// Put Patroni's access check (allowlist incl. members, client certificate, Basic auth) in front of
/// every route of `routes`. Use for every mutating endpoint.
pub fn mutating(routes: Router<AppState>, state: &AppState) -> Router<AppState> {
    routes.route_layer(middleware::from_fn_with_state(state.clone(), check_access))
}

/// As [`mutating`] but the allowlist is checked without the members' addresses (Patroni's
/// `check_access(allowlist_check_members=False)`, used by `POST /failsafe`).
pub fn mutating_without_members(routes: Router<AppState>, state: &AppState) -> Router<AppState> {
    routes.route_layer(middleware::from_fn_with_state(state.clone(), check_access_without_members))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn(ip: &str, cert: bool) -> ConnInfo {
        ConnInfo { peer: SocketAddr::new(ip.parse().expect("ip"), 40000), tls: cert, client_cert: cert }
    }

    fn basic(user: &str, pw: &str) -> String {
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pw}")))
    }

    #[test]
    fn cidr_matching_accepts_host_bits_and_mapped_v4() {
        let n = IpNet::parse_cidr("10.1.2.3/8").expect("net");
        assert!(n.contains("10.200.0.1".parse().expect("ip")));
        assert!(!n.contains("11.0.0.1".parse().expect("ip")));
        assert!(n.contains("::ffff:10.0.0.9".parse().expect("ip")));
        let all = IpNet::parse_cidr("0.0.0.0/0").expect("net");
        assert!(all.contains("192.0.2.1".parse().expect("ip")));
        let v6 = IpNet::parse_cidr("fd00::/8").expect("net");
        assert!(v6.contains("fd12::1".parse().expect("ip")));
        assert!(!v6.contains("10.0.0.1".parse().expect("ip")));
        assert!(IpNet::parse_cidr("10.0.0.0/33").is_err());
        assert!(IpNet::parse_cidr("nonsense/8").is_err());
    }

    #[test]
    fn no_configuration_allows_everything() {
        assert_eq!(Access::open().check(None, None, true, &[]), None);
    }

    #[test]
    fn basic_auth_gives_401_without_or_with_wrong_credentials() {
        let a = Access::open().with_basic("admin", "s3cret");
        let c = conn("127.0.0.1", false);
        assert_eq!(a.check(Some(&c), None, true, &[]), Some(Refusal::NoAuthHeader));
        assert_eq!(
            a.check(Some(&c), Some(&basic("admin", "wrong")), true, &[]),
            Some(Refusal::NotAuthenticated)
        );
        assert_eq!(a.check(Some(&c), Some("Bearer abc"), true, &[]), Some(Refusal::NotAuthenticated));
        assert_eq!(a.check(Some(&c), Some(&basic("admin", "s3cret")), true, &[]), None);
        let r = Refusal::NoAuthHeader.response();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(r.headers()[header::WWW_AUTHENTICATE], "Basic realm=\"Patroni\"");
    }

    #[test]
    fn allowlist_gives_403_before_auth_and_members_are_included_on_request() {
        let a = Access::open()
            .with_basic("admin", "pw")
            .with_allowlist(vec![IpNet::parse_cidr("10.0.0.0/24").expect("net")], true);
        let good = basic("admin", "pw");
        let members = &members_nets(&["http://127.0.0.2:8008/patroni".to_string(), "garbage".to_string()]);
        assert_eq!(a.check(Some(&conn("10.0.0.7", false)), Some(&good), true, members), None);
        assert_eq!(a.check(Some(&conn("127.0.0.2", false)), Some(&good), true, members), None);
        // POST /failsafe: members are not consulted.
        assert_eq!(
            a.check(Some(&conn("127.0.0.2", false)), Some(&good), false, members),
            Some(Refusal::AccessDenied)
        );
        assert_eq!(
            a.check(Some(&conn("127.0.0.3", false)), None, true, members),
            Some(Refusal::AccessDenied)
        );
        // Unknown peer (no connection facts): denied when a list applies.
        assert_eq!(a.check(None, Some(&good), true, members), Some(Refusal::AccessDenied));
        // allowlist_include_members alone restricts to the members.
        let m = Access::open().with_allowlist(Vec::new(), true);
        assert_eq!(
            m.check(Some(&conn("127.0.0.9", false)), None, true, members),
            Some(Refusal::AccessDenied)
        );
        assert_eq!(m.check(Some(&conn("127.0.0.9", false)), None, false, members), None);
    }

    #[test]
    fn client_certificate_is_required_when_verify_client_is_set() {
        let a = Access::open().with_client_cert_required(true);
        assert_eq!(
            a.check(Some(&conn("127.0.0.1", false)), None, true, &[]),
            Some(Refusal::ClientCertificateRequired)
        );
        assert_eq!(a.check(Some(&conn("127.0.0.1", true)), None, true, &[]), None);
    }

    #[test]
    fn hostnames_in_the_allowlist_resolve() {
        let c = crate::config::validate::RestApiConfig {
            allowlist: vec!["localhost".into(), "127.0.0.0/8".into(), "bad/99".into()],
            ..test_restapi()
        };
        let a = Access::from_config(&c);
        assert!(a.allowlist.iter().any(|n| n.contains("127.0.0.1".parse().expect("ip"))));
        assert!(a.auth_key.is_none());
    }

    fn test_restapi() -> crate::config::validate::RestApiConfig {
        crate::config::validate::RestApiConfig {
            listen: "127.0.0.1:8008".into(),
            connect_address: "127.0.0.1:8008".into(),
            authentication: None,
            certfile: None,
            keyfile: None,
            keyfile_password: None,
            cafile: None,
            ciphers: None,
            verify_client: crate::config::validate::VerifyClient::None,
            allowlist: Vec::new(),
            allowlist_include_members: false,
            http_extra_headers: Default::default(),
            https_extra_headers: Default::default(),
            request_queue_size: 5,
            server_tokens: "original".into(),
        }
    }
}
