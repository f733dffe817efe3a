//! Request bodies: [`ApiJson`] reads a JSON object body with Patroni's refusals (411 without a
//! `Content-Length` or body, 400 with a message naming the problem for anything that is not a
//! JSON object of the expected shape) — never axum's default 415/422, never a panic.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;

/// A JSON object body deserialized into `T` (unknown fields are the target type's business).
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

/// Why a body was refused.
#[derive(Debug, PartialEq, Eq)]
pub struct BodyRejection {
    /// 400, 411 or 413.
    pub code: StatusCode,
    /// Plain-text message.
    pub message: String,
}

impl IntoResponse for BodyRejection {
    fn into_response(self) -> Response {
        (self.code, self.message).into_response()
    }
}

/// Parse `bytes` as a JSON object into `T` (the pure part of [`ApiJson`]).
pub fn parse_object<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, BodyRejection> {
    let bad = |m: String| BodyRejection { code: StatusCode::BAD_REQUEST, message: m };
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(bad("Bad request: empty body".into()));
    }
    let v: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| bad(format!("Bad request: invalid JSON: {e}")))?;
    if !v.is_object() {
        return Err(bad("Bad request: the body must be a JSON object".into()));
    }
    serde_path_to_error::deserialize(v).map_err(|e| {
        let path = e.path().to_string();
        if path == "." {
            bad(format!("Bad request: {}", e.inner()))
        } else {
            bad(format!("Bad request: {path}: {}", e.inner()))
        }
    })
}

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = BodyRejection;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let has_length = req.headers().contains_key(header::CONTENT_LENGTH)
            || req.headers().contains_key(header::TRANSFER_ENCODING);
        let bytes = Bytes::from_request(req, state).await.map_err(|e| BodyRejection {
            code: if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                e.status()
            } else {
                StatusCode::BAD_REQUEST
            },
            message: format!("Bad request: {}", e.body_text()),
        })?;
        if !has_length && bytes.is_empty() {
            return Err(BodyRejection {
                code: StatusCode::LENGTH_REQUIRED,
                message: "Length Required".into(),
            });
        }
        parse_object(&bytes).map(ApiJson)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    struct Req {
        #[allow(dead_code)]
        name: String,
    }

    #[test]
    fn malformed_bodies_get_400_with_a_message() {
        for (body, needle) in [
            ("", "empty body"),
            ("{", "invalid JSON"),
            ("[1]", "JSON object"),
            ("{}", "missing field `name`"),
            (r#"{"name": 5}"#, "name: invalid type"),
        ] {
            let e = parse_object::<Req>(body.as_bytes()).expect_err(body);
            assert_eq!(e.code, StatusCode::BAD_REQUEST, "{body}");
            assert!(e.message.contains(needle), "{body}: {}", e.message);
        }
        assert!(parse_object::<Req>(br#"{"name":"pg0"}"#).is_ok());
    }
}
