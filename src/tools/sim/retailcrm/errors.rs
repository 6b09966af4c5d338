//! The API's error answers: `SimError` (status, `errorMsg`, `errors`), the constructors
//! for each answer the real service gives, and the rate limiter's own 503.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Map, Value};

/// An API error answer, also returned by the `seed_*` helpers.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("HTTP {status}: {error_msg}{}", errors_suffix(.errors))]
pub struct SimError {
    pub status: u16,
    pub error_msg: String,
    /// `Null` when the answer has no `errors`.
    pub errors: Value,
}

pub(super) type ApiResult = Result<(StatusCode, Value), SimError>;

pub(super) fn ok(body: Value) -> (StatusCode, Value) {
    (StatusCode::OK, body)
}

pub(super) fn created(body: Value) -> (StatusCode, Value) {
    (StatusCode::CREATED, body)
}

pub(super) type Errors = Map<String, Value>;

impl SimError {
    pub(super) fn new(status: u16, error_msg: &str, errors: Value) -> SimError {
        SimError {
            status,
            error_msg: error_msg.to_string(),
            errors,
        }
    }
    pub(super) fn missing_key() -> SimError {
        SimError::new(403, "\"apiKey\" is missing.", Value::Null)
    }
    pub(super) fn wrong_key() -> SimError {
        SimError::new(403, "Wrong \"apiKey\" value.", Value::Null)
    }
    pub(super) fn method_not_found() -> SimError {
        SimError::new(404, "API method not found", Value::Null)
    }
    pub(super) fn method_not_allowed() -> SimError {
        SimError::new(405, "Method Not Allowed", Value::Null)
    }
    pub(super) fn not_found() -> SimError {
        SimError::new(404, "Not found", Value::Null)
    }
    pub(super) fn missing_param(name: &str) -> SimError {
        SimError::new(400, &format!("Parameter '{name}' is missing"), Value::Null)
    }
    pub(super) fn entity(errors: Errors) -> SimError {
        SimError::new(400, "Errors in the entity format", Value::Object(errors))
    }
    pub(super) fn entity1(field: &str, msg: &str) -> SimError {
        let mut errors = Errors::new();
        errors.insert(field.to_string(), Value::String(msg.to_string()));
        SimError::entity(errors)
    }
    pub(super) fn input(field: &str, msg: &str) -> SimError {
        SimError::new(400, "Errors in the input parameters", json!({ field: msg }))
    }

    pub(super) fn body(&self) -> Value {
        let mut m = Map::new();
        m.insert("success".into(), Value::Bool(false));
        m.insert("errorMsg".into(), Value::String(self.error_msg.clone()));
        if !self.errors.is_null() {
            m.insert("errors".into(), self.errors.clone());
        }
        Value::Object(m)
    }
}

fn errors_suffix(errors: &Value) -> String {
    if errors.is_null() {
        String::new()
    } else {
        format!(" {errors}")
    }
}

pub(super) fn error_response(e: &SimError) -> Response {
    let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, Json(e.body())).into_response()
}

const RATE_LIMIT_MSG: &str = "Service temporary unavailable";

pub(super) fn rate_limited_response(retry_after_secs: Option<u32>) -> Response {
    let body = json!({"success": false, "errorMsg": RATE_LIMIT_MSG});
    let mut response = (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response();
    if let Some(secs) = retry_after_secs {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    response
}
