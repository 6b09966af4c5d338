//! Failures a test injects ([`Fault`]): queued, matched by path, answered before
//! authentication.

use std::time::Duration;

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::errors::{error_response, rate_limited_response, SimError};

/// A failure injected with [`RetailCrmSim::inject`](super::RetailCrmSim::inject), consumed by the next matching requests
/// (before authentication, so it hits any request on the path).
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// HTTP 503 with an nginx-style HTML page (an overloaded or restarting front end).
    Status503 { times: u32 },
    /// The rate limiter's own answer, optionally with a `Retry-After` header.
    RateLimited {
        times: u32,
        retry_after_secs: Option<u32>,
    },
    /// Any status with the API's error body (`errors` omitted when `Null`).
    ApiError {
        times: u32,
        status: u16,
        error_msg: String,
        errors: Value,
    },
    /// Wait, then process the request normally.
    Delay { times: u32, delay: Duration },
    /// Only requests whose path starts with `prefix` match. The prefix is either a full path
    /// (`/api/v5/telephony/calls/upload`) or relative to `/api/v5` (`/telephony/calls/upload`).
    OnPath { prefix: String, fault: Box<Fault> },
}

impl Fault {
    /// Restricts this fault to paths starting with `prefix` (see [`Fault::OnPath`]).
    pub fn on_path(self, prefix: impl Into<String>) -> Fault {
        Fault::OnPath {
            prefix: prefix.into(),
            fault: Box::new(self),
        }
    }
}

const NGINX_503: &str =
    "<html>\r\n<head><title>503 Service Temporarily Unavailable</title></head>\r\n\
<body>\r\n<center><h1>503 Service Temporarily Unavailable</h1></center>\r\n\
<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n";

pub(super) fn fault_response(fault: Fault) -> Response {
    match fault {
        Fault::Status503 { .. } => (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            NGINX_503,
        )
            .into_response(),
        Fault::RateLimited {
            retry_after_secs, ..
        } => rate_limited_response(retry_after_secs),
        Fault::ApiError {
            status,
            error_msg,
            errors,
            ..
        } => error_response(&SimError {
            status,
            error_msg,
            errors,
        }),
        // Delays are handled by the caller; nested paths are flattened at injection.
        Fault::Delay { .. } | Fault::OnPath { .. } => error_response(&SimError::not_found()),
    }
}

pub(super) struct FaultEntry {
    pub(super) prefix: Option<String>,
    pub(super) fault: Fault,
    pub(super) remaining: u32,
}

impl FaultEntry {
    pub(super) fn matches(&self, path: &str) -> bool {
        match &self.prefix {
            None => true,
            Some(prefix) if prefix.starts_with("/api/") => path.starts_with(prefix.as_str()),
            Some(prefix) => path
                .strip_prefix("/api/v5")
                .is_some_and(|rest| rest.starts_with(prefix.as_str())),
        }
    }
}
