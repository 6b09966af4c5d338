//! retailCRM API v5 client: the telephony requests callbridge makes, with the API's
//! encoding (form fields holding JSON, `X-API-KEY` header) and its answers turned into
//! `Delivered` / `CrmError`. Request shapes follow `retailcrm/api-client-php` (models
//! `Telephony/CallEvent`, `Telephony/Call`) and the notes in `docs/retailcrm.md`.

use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderValue, RETRY_AFTER};
use serde_json::{json, Map, Value};

use crate::actions::{CallEvent, CallEventType, CallRecord, CallResult, CrmAction, HangupStatus};
use crate::call::Direction;
use crate::config::{CrmConfig, Secret};
use crate::crm::{CrmError, Delivered};

#[derive(Debug, Clone)]
pub struct RetailCrm {
    http: reqwest::Client,
    /// `https://example.retailcrm.ru`, without a trailing slash.
    base: String,
    api_key: Secret,
    site: Option<String>,
}

impl RetailCrm {
    pub fn new(config: &CrmConfig) -> Result<Self, CrmError> {
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout.min(Duration::from_secs(5)))
            .user_agent(concat!("callbridge/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| CrmError::Transport(format!("HTTP client: {e}")))?;
        Ok(RetailCrm {
            http,
            base: config.url.trim_end_matches('/').to_string(),
            api_key: config.api_key.clone(),
            site: config.site.clone(),
        })
    }

    /// Sends one action; `Ok` only when the CRM confirmed it.
    pub async fn send(&self, action: &CrmAction) -> Result<Delivered, CrmError> {
        match action {
            CrmAction::CallEvent(event) => {
                let body = self.call_event_json(event);
                let (status, answer) = self
                    .post_form(
                        "/api/v5/telephony/call/event",
                        &[("event", body.to_string())],
                    )
                    .await?;
                Ok(Delivered {
                    status,
                    note: unknown_codes_note(&answer),
                })
            }
            CrmAction::CallHistory(record) => {
                let calls = Value::Array(vec![self.call_record_json(record)]);
                let (status, answer) = self
                    .post_form(
                        "/api/v5/telephony/calls/upload",
                        &[("calls", calls.to_string())],
                    )
                    .await?;
                // A re-upload after an uncertain attempt lands in duplicateCalls: the
                // call is in the history either way.
                let dup = answer
                    .get("duplicateCalls")
                    .and_then(Value::as_array)
                    .filter(|d| !d.is_empty())
                    .map(|d| format!("already in history: {}", Value::Array(d.clone())));
                Ok(Delivered { status, note: dup })
            }
        }
    }

    /// The `event` form field of `POST /telephony/call/event`.
    pub fn call_event_json(&self, e: &CallEvent) -> Value {
        let mut m = Map::new();
        m.insert("phone".into(), json!(e.phone));
        m.insert(
            "type".into(),
            json!(match e.event {
                CallEventType::In => "in",
                CallEventType::Out => "out",
                CallEventType::Hangup => "hangup",
            }),
        );
        m.insert("codes".into(), json!(e.codes));
        if let Some(status) = e.hangup_status {
            m.insert(
                "hangupStatus".into(),
                json!(match status {
                    HangupStatus::Answered => "answered",
                    HangupStatus::Busy => "busy",
                    HangupStatus::Cancel => "cancel",
                    HangupStatus::Failed => "failed",
                    HangupStatus::NoAnswered => "no answered",
                }),
            );
        }
        m.insert("callExternalId".into(), json!(e.call_external_id));
        if let Some(p) = &e.external_phone {
            m.insert("externalPhone".into(), json!(p));
        }
        if let Some(site) = &self.site {
            m.insert("site".into(), json!(site));
        }
        Value::Object(m)
    }

    /// One element of the `calls` form field of `POST /telephony/calls/upload`.
    pub fn call_record_json(&self, r: &CallRecord) -> Value {
        let mut m = Map::new();
        m.insert("date".into(), json!(r.date.to_crm_local()));
        m.insert(
            "type".into(),
            json!(match r.direction {
                Direction::Outbound => "out",
                _ => "in",
            }),
        );
        m.insert("phone".into(), json!(r.phone));
        if let Some(code) = &r.code {
            m.insert("code".into(), json!(code));
        }
        m.insert(
            "result".into(),
            json!(match r.result {
                CallResult::Answered => "answered",
                CallResult::Busy => "busy",
                CallResult::Failed => "failed",
                CallResult::NoAnswer => "no answer",
            }),
        );
        m.insert("duration".into(), json!(r.duration));
        m.insert("durationWaiting".into(), json!(r.duration_waiting));
        m.insert("externalId".into(), json!(r.external_id));
        if let Some(p) = &r.external_phone {
            m.insert("externalPhone".into(), json!(p));
        }
        if let Some(url) = &r.record_url {
            m.insert("recordUrl".into(), json!(url));
        }
        if let Some(site) = &self.site {
            m.insert("site".into(), json!(site));
        }
        Value::Object(m)
    }

    /// POSTs form fields, returns the HTTP status and the parsed `success: true` body.
    async fn post_form(
        &self,
        path: &str,
        fields: &[(&str, String)],
    ) -> Result<(u16, Value), CrmError> {
        let url = format!("{}{}", self.base, path);
        let response = self
            .http
            .post(&url)
            .header("X-API-KEY", self.api_key.expose())
            .form(fields)
            .send()
            .await
            .map_err(|e| CrmError::Transport(transport_text(&e)))?;
        let status = response.status().as_u16();
        let retry_after = retry_after(response.headers());
        let text = response
            .text()
            .await
            .map_err(|e| CrmError::Transport(transport_text(&e)))?;
        interpret(status, retry_after, &text)
    }
}

/// Reads an API v5 answer: `{"success":true,…}` or `{"success":false,"errorMsg":…,"errors":…}`.
pub fn interpret(
    status: u16,
    retry_after: Option<Duration>,
    text: &str,
) -> Result<(u16, Value), CrmError> {
    let Ok(body) = serde_json::from_str::<Value>(text) else {
        return Err(CrmError::BadBody {
            status,
            snippet: text
                .chars()
                .take(120)
                .collect::<String>()
                .replace(['\n', '\r'], " "),
        });
    };
    let success = body.get("success").and_then(Value::as_bool) == Some(true);
    if success && (200..300).contains(&status) {
        return Ok((status, body));
    }
    let mut message = body
        .get("errorMsg")
        .and_then(Value::as_str)
        .unwrap_or("success is not true")
        .to_string();
    // `errors` is either {field: message} or [message].
    let details: Vec<String> = match body.get("errors") {
        Some(Value::Object(map)) => map
            .iter()
            .map(|(k, v)| {
                format!(
                    "{k}: {}",
                    v.as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| v.to_string())
                )
            })
            .collect(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| v.to_string())
            })
            .collect(),
        _ => Vec::new(),
    };
    if !details.is_empty() {
        message = format!("{message} ({})", details.join("; "));
    }
    Err(CrmError::Rejected {
        status,
        message,
        retry_after,
    })
}

fn unknown_codes_note(answer: &Value) -> Option<String> {
    let list = |k: &str| {
        answer
            .get(k)
            .and_then(Value::as_array)
            .filter(|a| !a.is_empty())
            .map(|a| format!("{k}: {}", Value::Array(a.clone())))
    };
    match (list("notExistCodes"), list("notExistUsers")) {
        (None, None) => None,
        (a, b) => Some([a, b].into_iter().flatten().collect::<Vec<_>>().join(", ")),
    }
}

fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let v: &HeaderValue = headers.get(RETRY_AFTER)?;
    let secs: u64 = v.to_str().ok()?.trim().parse().ok()?;
    Some(Duration::from_secs(secs.min(3600)))
}

/// reqwest's error text without the chain noise; it never holds the API key, which
/// travels in a header.
fn transport_text(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else {
        "request failed"
    };
    let mut text = format!("{kind}: {e}");
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(&format!(": {s}"));
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn success_false_becomes_rejected_with_field_errors() {
        let err = interpret(
            400,
            None,
            r#"{"success":false,"errorMsg":"Errors in the entity format","errors":{"phone":"This value should not be blank."}}"#,
        )
        .expect_err("rejected");
        assert_eq!(
            err,
            CrmError::Rejected {
                status: 400,
                message: "Errors in the entity format (phone: This value should not be blank.)"
                    .into(),
                retry_after: None
            }
        );
        assert!(!err.is_transient());
    }

    #[test]
    fn errors_may_be_a_list() {
        let err = interpret(
            400,
            None,
            r#"{"success":false,"errorMsg":"Validation error","errors":["a","b"]}"#,
        )
        .expect_err("rejected");
        assert_eq!(
            err.to_string(),
            "CRM answered HTTP 400: Validation error (a; b)"
        );
    }

    #[test]
    fn rate_limit_and_html_are_transient() {
        let err = interpret(
            429,
            Some(Duration::from_secs(2)),
            r#"{"success":false,"errorMsg":"Too many requests"}"#,
        )
        .expect_err("limited");
        assert!(err.is_transient());
        assert_eq!(err.retry_after(), Some(Duration::from_secs(2)));
        let err = interpret(502, None, "<html>Bad gateway</html>").expect_err("html");
        assert!(matches!(err, CrmError::BadBody { status: 502, .. }));
        assert!(err.is_transient());
        let err = interpret(
            403,
            None,
            r#"{"success":false,"errorMsg":"Wrong \"apiKey\" value."}"#,
        )
        .expect_err("key");
        assert!(!err.is_transient());
    }

    #[test]
    fn success_true_is_ok() {
        let (status, body) =
            interpret(200, None, r#"{"success":true,"notExistCodes":["109"]}"#).expect("ok");
        assert_eq!(status, 200);
        assert_eq!(
            unknown_codes_note(&body).as_deref(),
            Some(r#"notExistCodes: ["109"]"#)
        );
    }
}
