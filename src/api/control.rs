//! The management endpoints (PATRONI-COMPAT §3.4): `PATCH`/`PUT /config`, `POST /reload`,
//! `POST`/`DELETE /restart`, `POST /reinitialize`, `POST /switchover`, `POST /failover`,
//! `DELETE /switchover`.
//!
//! Thin: each handler checks the body (400 naming the field, 411 without a body where one is
//! required) and sends an [`HaCommand`] to the HA side, which owns every DCS write and PostgreSQL
//! action, then maps the [`Reply`] to HTTP.

use super::server::AppState;
use crate::ha::command::{HaCommand, Reply, ReplyBody};
use crate::ha::manual::{self, Refusal};
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use axum::routing::{patch, post};
use serde_json::{Map, Value};

/// The management routes (merged into [`super::server::router`]; they take the auth layer).
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/config", patch(patch_config).put(put_config))
        .route("/reload", post(reload))
        .route("/restart", post(restart).delete(delete_restart))
        .route("/reinitialize", post(reinitialize))
        .route("/switchover", post(switchover).delete(delete_switchover))
        .route("/failover", post(failover))
}

/// A text response (Patroni writes plain messages as `text/html`).
fn text(code: u16, body: impl Into<String>) -> Response {
    let mut r = Response::new(Body::from(body.into()));
    *r.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html"));
    r
}

fn refuse(r: Refusal) -> Response {
    text(r.code, r.message)
}

fn reply(r: Reply) -> Response {
    match r.body {
        ReplyBody::Text(t) => text(r.code, t),
        ReplyBody::Json(v) => {
            let mut resp = text(r.code, v.to_string());
            resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
            resp
        }
    }
}

/// Patroni `_read_json_content`: a JSON object. Without a body: 411 when one is required, `{}`
/// when optional; an empty object where one is required, or anything not a JSON object: 400.
fn read_json(headers: &HeaderMap, body: &Bytes, optional: bool) -> Result<Map<String, Value>, Refusal> {
    if body.is_empty() {
        return if optional {
            Ok(Map::new())
        } else if headers.contains_key(header::CONTENT_LENGTH) {
            Err(Refusal::new(400, "the request body must be a non-empty JSON object"))
        } else {
            Err(Refusal::new(411, "Length Required: the request needs a JSON body"))
        };
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) if !m.is_empty() || optional => Ok(m),
        Ok(Value::Object(_)) => Err(Refusal::new(400, "the request body must be a non-empty JSON object")),
        Ok(_) => Err(Refusal::new(400, "the request body must be a JSON object")),
        Err(e) => Err(Refusal::new(400, format!("the request body is not valid JSON: {e}"))),
    }
}

/// Patroni `parse_bool` for a body flag; `Err` names the field.
fn flag(body: &Map<String, Value>, field: &str) -> Result<bool, Refusal> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(Value::Number(n)) if n.as_i64() == Some(0) || n.as_i64() == Some(1) => Ok(n.as_i64() == Some(1)),
        Some(Value::String(s)) => match s.trim().to_ascii_lowercase().as_str() {
            "on" | "true" | "yes" | "1" => Ok(true),
            "off" | "false" | "no" | "0" => Ok(false),
            _ => Err(Refusal::new(400, format!("{field} must be a boolean"))),
        },
        Some(_) => Err(Refusal::new(400, format!("{field} must be a boolean"))),
    }
}

async fn send(app: &AppState, cmd: HaCommand) -> Response {
    reply(app.cmd.request(cmd).await)
}

async fn patch_config(State(app): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    match read_json(&headers, &body, false) {
        Ok(m) => send(&app, HaCommand::PatchConfig(m)).await,
        Err(r) => refuse(r),
    }
}

async fn put_config(State(app): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    match read_json(&headers, &body, false) {
        Ok(m) => send(&app, HaCommand::PutConfig(m)).await,
        Err(r) => refuse(r),
    }
}

async fn reload(State(app): State<AppState>) -> Response {
    send(&app, HaCommand::Reload).await
}

async fn restart(State(app): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let m = match read_json(&headers, &body, true) {
        Ok(m) => m,
        Err(r) => return refuse(r),
    };
    let paused = app.status.borrow().pause;
    match manual::check_restart_request(&m, paused, chrono::Utc::now()) {
        Ok(req) => send(&app, HaCommand::Restart(req)).await,
        Err(r) => refuse(r),
    }
}

async fn delete_restart(State(app): State<AppState>) -> Response {
    send(&app, HaCommand::DeleteRestart).await
}

async fn reinitialize(State(app): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let m = match read_json(&headers, &body, true) {
        Ok(m) => m,
        Err(r) => return refuse(r),
    };
    let (force, from_leader) = match (flag(&m, "force"), flag(&m, "from_leader")) {
        (Ok(f), Ok(l)) => (f, l),
        (Err(r), _) | (_, Err(r)) => return refuse(r),
    };
    send(&app, HaCommand::Reinitialize { force, from_leader }).await
}

async fn failover_action(app: &AppState, action: &str, headers: &HeaderMap, body: &Bytes) -> Response {
    match read_json(headers, body, false) {
        Ok(m) => send(app, HaCommand::Failover { action: action.into(), body: m }).await,
        Err(r) => refuse(r),
    }
}

async fn switchover(State(app): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    failover_action(&app, "switchover", &headers, &body).await
}

async fn failover(State(app): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    failover_action(&app, "failover", &headers, &body).await
}

async fn delete_switchover(State(app): State<AppState>) -> Response {
    send(&app, HaCommand::DeleteSwitchover).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::status::NodeStatus;
    use crate::ha::command::{CommandInbox, HaHandle};
    use crate::ha::runner::HaShared;
    use axum::http::{Method, Request};
    use std::sync::Arc;
    use tokio::sync::watch;
    use tower::ServiceExt;

    /// A router whose commands land in the returned inbox (nobody answers them unless the test
    /// does).
    fn app(paused: bool) -> (Router, CommandInbox, watch::Sender<Arc<NodeStatus>>) {
        let mut s = NodeStatus::initial("demo", "pg1");
        s.pause = paused;
        let (tx, rx) = watch::channel(Arc::new(s));
        let (cmd, inbox) = HaHandle::channel();
        let state = AppState::new(rx, Arc::new(HaShared::new())).with_commands(cmd);
        (super::super::server::router(state), inbox, tx)
    }

    fn req(method: Method, path: &str, body: Option<&str>) -> Request<Body> {
        let b = Request::builder().method(method).uri(path);
        match body {
            Some(s) => b
                .header("content-type", "application/json")
                .header("content-length", s.len().to_string())
                .body(Body::from(s.to_string()))
                .expect("request"),
            None => b.body(Body::empty()).expect("request"),
        }
    }

    async fn call(r: &Router, rq: Request<Body>) -> (u16, String) {
        let resp = r.clone().oneshot(rq).await.expect("response");
        let code = resp.status().as_u16();
        let body = axum::body::to_bytes(resp.into_body(), 1 << 20).await.expect("body");
        (code, String::from_utf8_lossy(&body).to_string())
    }

    /// Serve one command with `answer`, returning what was asked.
    fn answer_one(mut inbox: CommandInbox, answer: Reply) -> tokio::task::JoinHandle<Option<HaCommand>> {
        tokio::spawn(async move {
            let (cmd, tx) = inbox.recv().await?;
            let _ = tx.send(answer);
            Some(cmd)
        })
    }

    #[tokio::test]
    async fn restart_refuses_bad_filters_with_patronis_messages() {
        let (r, _inbox, _tx) = app(false);
        for (body, code, msg) in [
            (
                r#"{"role":"master"}"#,
                400,
                "PostgreSQL role should be either primary, standby_leader, or replica",
            ),
            (
                r#"{"postgres_version":"9.6"}"#,
                400,
                "Invalid PostgreSQL version format: X.Y or X.Y.Z is accepted: 9.6",
            ),
            (r#"{"postgres_version":"a.b"}"#, 400, "Invalid PostgreSQL version: a.b"),
            (r#"{"timeout":0}"#, 400, "Timeout should be a positive number of seconds"),
            (r#"{"timeout":"soon"}"#, 400, "Timeout should be a positive number of seconds"),
            (r#"{"colour":"blue"}"#, 400, "Unknown filter for the scheduled restart: colour"),
            (r#"{"schedule":"2020-01-01T00:00:00+00:00"}"#, 422, "Cannot schedule restart in the past"),
            (
                r#"{"schedule":"2999-01-01T00:00:00"}"#,
                400,
                "Timezone information is mandatory for the scheduled restart",
            ),
            (
                r#"{"schedule":"tomorrow-ish"}"#,
                422,
                "Unable to parse scheduled timestamp. It should be in an unambiguous format, e.g. ISO 8601",
            ),
            (r#"[1]"#, 400, "the request body must be a JSON object"),
            (r#"{"role":"#, 400, "the request body is not valid JSON"),
        ] {
            let (c, b) = call(&r, req(Method::POST, "/restart", Some(body))).await;
            assert_eq!(c, code, "{body}");
            assert!(b.starts_with(msg), "{body}: {b}");
        }
    }

    #[tokio::test]
    async fn restart_cannot_be_scheduled_while_paused() {
        let (r, _inbox, _tx) = app(true);
        let (c, b) =
            call(&r, req(Method::POST, "/restart", Some(r#"{"schedule":"2999-01-01T00:00:00+00:00"}"#)))
                .await;
        assert_eq!((c, b.as_str()), (500, "Can't schedule restart in the paused state"));
    }

    #[tokio::test]
    async fn restart_without_body_is_an_immediate_restart_command() {
        let (r, inbox, _tx) = app(false);
        let served = answer_one(inbox, Reply::text(200, "restarted successfully"));
        let (c, b) = call(&r, req(Method::POST, "/restart", None)).await;
        assert_eq!((c, b.as_str()), (200, "restarted successfully"));
        assert_eq!(served.await.expect("join"), Some(HaCommand::Restart(manual::RestartRequest::default())));
    }

    #[tokio::test]
    async fn scheduled_restart_carries_its_filters() {
        let (r, inbox, _tx) = app(false);
        let served = answer_one(inbox, Reply::text(202, "Restart scheduled"));
        let body = r#"{"schedule":"2999-01-01T10:00:00+02:00","role":"replica","postgres_version":"15.99","timeout":"30s","restart_pending":true}"#;
        let (c, b) = call(&r, req(Method::POST, "/restart", Some(body))).await;
        assert_eq!((c, b.as_str()), (202, "Restart scheduled"));
        let Some(HaCommand::Restart(rq)) = served.await.expect("join") else { panic!("not a restart") };
        assert_eq!(rq.schedule.map(|t| t.to_rfc3339()).as_deref(), Some("2999-01-01T10:00:00+02:00"));
        assert_eq!(rq.role, Some(crate::types::Role::Replica));
        assert_eq!(rq.postgres_version.as_deref(), Some("15.99"));
        assert_eq!(rq.timeout, Some(30));
        assert!(rq.restart_pending);
    }

    #[tokio::test]
    async fn bodies_are_required_where_patroni_requires_them() {
        let (r, _inbox, _tx) = app(false);
        for (m, path) in [
            (Method::PATCH, "/config"),
            (Method::PUT, "/config"),
            (Method::POST, "/switchover"),
            (Method::POST, "/failover"),
        ] {
            let (c, _) = call(&r, req(m.clone(), path, None)).await;
            assert_eq!(c, 411, "{m} {path} without a body");
            let (c, b) = call(&r, req(m.clone(), path, Some("{}"))).await;
            assert_eq!(c, 400, "{m} {path} with an empty object");
            assert!(b.contains("non-empty JSON object"), "{b}");
            let (c, _) = call(&r, req(m.clone(), path, Some("\"x\""))).await;
            assert_eq!(c, 400, "{m} {path} with a string");
        }
    }

    #[tokio::test]
    async fn reinitialize_flags_are_checked_and_forwarded() {
        let (r, _inbox, _tx) = app(false);
        let (c, b) = call(&r, req(Method::POST, "/reinitialize", Some(r#"{"force":"maybe"}"#))).await;
        assert_eq!((c, b.as_str()), (400, "force must be a boolean"));
        let (c, b) = call(&r, req(Method::POST, "/reinitialize", Some(r#"{"from_leader":[1]}"#))).await;
        assert_eq!((c, b.as_str()), (400, "from_leader must be a boolean"));
        let (r, inbox, _tx) = app(false);
        let served = answer_one(inbox, Reply::text(200, "reinitialize started"));
        let (c, _) =
            call(&r, req(Method::POST, "/reinitialize", Some(r#"{"force":true,"from_leader":"yes"}"#))).await;
        assert_eq!(c, 200);
        assert_eq!(
            served.await.expect("join"),
            Some(HaCommand::Reinitialize { force: true, from_leader: true })
        );
    }

    #[tokio::test]
    async fn switchover_and_config_bodies_are_forwarded_and_replies_mapped() {
        let (r, inbox, _tx) = app(false);
        let served =
            answer_one(inbox, Reply { code: 200, body: ReplyBody::Json(serde_json::json!({"ttl": 20})) });
        let rq = req(
            Method::PATCH,
            "/config",
            Some(r#"{"ttl":20,"postgresql":{"parameters":{"work_mem":null}}}"#),
        );
        let resp = r.clone().oneshot(rq).await.expect("response");
        assert_eq!(resp.status().as_u16(), 200);
        assert_eq!(
            resp.headers().get("content-type").and_then(|v| v.to_str().ok()),
            Some("application/json")
        );
        let Some(HaCommand::PatchConfig(m)) = served.await.expect("join") else { panic!("not a patch") };
        assert_eq!(m.get("ttl"), Some(&serde_json::json!(20)));

        let (r, inbox, _tx) = app(false);
        let served = answer_one(inbox, Reply::text(412, "candidate does not exists"));
        let (c, b) =
            call(&r, req(Method::POST, "/switchover", Some(r#"{"leader":"pg0","candidate":"pgX"}"#))).await;
        assert_eq!((c, b.as_str()), (412, "candidate does not exists"));
        let Some(HaCommand::Failover { action, body }) = served.await.expect("join") else {
            panic!("not a failover")
        };
        assert_eq!(action, "switchover");
        assert_eq!(body.get("candidate"), Some(&serde_json::json!("pgX")));
    }

    #[tokio::test]
    async fn without_an_ha_task_commands_get_503_not_a_hang() {
        let (r, inbox, _tx) = app(false);
        drop(inbox);
        for (m, path) in
            [(Method::POST, "/reload"), (Method::DELETE, "/restart"), (Method::DELETE, "/switchover")]
        {
            let (c, _) = call(&r, req(m, path, None)).await;
            assert_eq!(c, 503, "{path}");
        }
    }
}
