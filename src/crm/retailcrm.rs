//! retailCRM API v5 client: the requests callbridge makes, with the API's encoding (form
//! fields holding JSON, `X-API-KEY` header) and its answers turned into `Delivered` /
//! `CrmError`. Request shapes follow `retailcrm/api-client-php` (models
//! `Telephony/CallEvent`, `Telephony/Call`, `Customers/Customer`, `Orders/Order`,
//! `Tasks/Task`) and the notes in `docs/retailcrm.md`.
//!
//! Exactly once as the CRM sees it (docs/delivery.md): customers and orders carry an
//! externalId derived from the call, so an attempt "in doubt" (an earlier one may have
//! worked) first looks the record up by externalId, and a create refused because the
//! externalId exists is the earlier attempt's record; a task carries a marker in its
//! commentary that a lookup finds; calls in the history are deduplicated by their
//! externalId by retailCRM itself; manager changes set a value and repeat harmlessly.
//! Every request first takes a token from the shared rate limiter.

use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderValue, RETRY_AFTER};
use serde_json::{json, Map, Value};

use crate::actions::{
    CallEvent, CallEventType, CallRecord, CallResult, CrmAction, Entity, EntityRef, HangupStatus,
    ManagerChange, NewCustomer, NewOrder, NewTask, Source,
};
use crate::call::Direction;
use crate::config::{CrmConfig, Secret};
use crate::crm::rate::RateLimiter;
use crate::crm::{CrmError, Delivered};

#[derive(Debug, Clone)]
pub struct RetailCrm {
    http: reqwest::Client,
    /// `https://example.retailcrm.ru`, without a trailing slash.
    base: String,
    api_key: Secret,
    site: Option<String>,
    /// Shared by every clone: all workers together stay under the key's limit.
    limit: RateLimiter,
    telephony_limit: RateLimiter,
    /// How the last request went, for `/health` (shared by every clone).
    reach: std::sync::Arc<std::sync::Mutex<Reach>>,
}

/// Whether the CRM answered lately: any HTTP answer counts (a refusal is an answer);
/// no answer at all (connect error, timeout) does not.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Reach {
    /// `None` until the first request.
    pub reachable: Option<bool>,
    /// When the CRM last answered (ISO 8601, UTC).
    pub last_answer_at: Option<String>,
    /// The last request that got no answer, and why.
    pub last_error: Option<String>,
}

const TELEPHONY: &str = "/api/v5/telephony/";

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
            limit: RateLimiter::new(config.rate_limit_per_sec),
            telephony_limit: RateLimiter::new(config.telephony_rate_limit_per_sec),
            reach: Default::default(),
        })
    }

    /// Whether the CRM answered its last request (for `/health`).
    pub fn reach(&self) -> Reach {
        self.reach
            .lock()
            .map(|r| r.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }

    fn answered(&self, error: Option<String>) {
        let mut reach = self.reach.lock().unwrap_or_else(|p| p.into_inner());
        match error {
            None => {
                reach.reachable = Some(true);
                reach.last_answer_at = Some(chrono::Utc::now().to_rfc3339());
            }
            Some(e) => {
                reach.reachable = Some(false);
                reach.last_error = Some(e);
            }
        }
    }

    /// Sends one action; `Ok` only when the CRM confirmed it. `in_doubt`: an earlier
    /// attempt may have reached the CRM, so look for its record before creating one.
    pub async fn send(&self, action: &CrmAction, in_doubt: bool) -> Result<Delivered, CrmError> {
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
                    result: None,
                })
            }
            CrmAction::CreateCustomer(c) => {
                self.create_once(
                    Entity::Customer,
                    &c.external_id,
                    self.customer_json(c),
                    in_doubt,
                )
                .await
            }
            CrmAction::CreateOrder(o) => {
                self.create_once(Entity::Order, &o.external_id, self.order_json(o), in_doubt)
                    .await
            }
            CrmAction::CreateTask(t) => self.create_task(t, in_doubt).await,
            CrmAction::SetManager(m) => self.set_manager(m).await,
            // The outbox runs decisions itself (`decider`); one never reaches the CRM.
            CrmAction::Decide(_) => Err(CrmError::Rejected {
                status: 0,
                message: "a matrix decision is not a CRM request".into(),
                retry_after: None,
            }),
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
                Ok(Delivered {
                    status,
                    note: dup,
                    result: None,
                })
            }
        }
    }

    /// Creates a customer or an order at most once: found by its externalId when an
    /// earlier attempt may have made it, or when the create says it exists.
    async fn create_once(
        &self,
        entity: Entity,
        external_id: &str,
        body: Value,
        in_doubt: bool,
    ) -> Result<Delivered, CrmError> {
        let (plural, field) = match entity {
            Entity::Customer => ("customers", "customer"),
            Entity::Order => ("orders", "order"),
        };
        if in_doubt {
            if let Some(found) = self.find_by_external_id(plural, field, external_id).await? {
                return Ok(found);
            }
        }
        let mut fields = vec![(field, body.to_string())];
        if let Some(site) = &self.site {
            fields.push(("site", site.clone()));
        }
        match self
            .post_form(&format!("/api/v5/{plural}/create"), &fields)
            .await
        {
            Ok((status, answer)) => Ok(Delivered {
                status,
                note: None,
                result: answer.get("id").map(|id| json!({ "id": id })),
            }),
            Err(e) if e.status() == Some(400) && mentions_existing_external_id(&e) => {
                match self.find_by_external_id(plural, field, external_id).await? {
                    Some(found) => Ok(found),
                    None => Err(e),
                }
            }
            Err(e) => Err(e),
        }
    }

    /// `GET /{customers|orders}/{externalId}?by=externalId`: the record's id, or `None`
    /// when the CRM has no such record.
    async fn find_by_external_id(
        &self,
        plural: &str,
        field: &str,
        external_id: &str,
    ) -> Result<Option<Delivered>, CrmError> {
        let path = format!("/api/v5/{plural}/{}", path_segment(external_id));
        let mut query = vec![("by", "externalId".to_string())];
        if let Some(site) = &self.site {
            query.push(("site", site.clone()));
        }
        match self.get(&path, &query).await {
            Ok((status, answer)) => {
                let id = answer.get(field).and_then(|c| c.get("id")).cloned();
                Ok(id.map(|id| Delivered {
                    status,
                    note: Some(format!("{field} {external_id} already existed (id {id})")),
                    result: Some(json!({ "id": id })),
                }))
            }
            Err(e) if e.status() == Some(404) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn create_task(&self, t: &NewTask, in_doubt: bool) -> Result<Delivered, CrmError> {
        if in_doubt {
            if let Some(found) = self.find_task(t).await? {
                return Ok(found);
            }
        }
        let mut fields = vec![("task", self.task_json(t).to_string())];
        if let Some(site) = &self.site {
            fields.push(("site", site.clone()));
        }
        let (status, answer) = self.post_form("/api/v5/tasks/create", &fields).await?;
        Ok(Delivered {
            status,
            note: None,
            result: answer.get("id").map(|id| json!({ "id": id })),
        })
    }

    /// A task made by an earlier attempt: the performer's tasks whose text search finds
    /// the marker, checked here (the marker must really be in the text or commentary).
    async fn find_task(&self, t: &NewTask) -> Result<Option<Delivered>, CrmError> {
        let query = vec![
            ("filter[text]", t.marker.clone()),
            ("filter[performers][]", t.performer_id.to_string()),
            ("limit", "100".to_string()),
        ];
        let (status, answer) = self.get("/api/v5/tasks", &query).await?;
        let found = answer
            .get("tasks")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .find(|task| {
                ["commentary", "text"].iter().any(|k| {
                    task.get(*k)
                        .and_then(Value::as_str)
                        .is_some_and(|s| s.contains(&t.marker))
                })
            });
        Ok(found.map(|task| Delivered {
            status,
            note: Some(format!("task {} already existed", t.marker)),
            result: task.get("id").map(|id| json!({ "id": id })),
        }))
    }

    async fn set_manager(&self, m: &ManagerChange) -> Result<Delivered, CrmError> {
        let (plural, field) = match m.entity {
            Entity::Customer => ("customers", "customer"),
            Entity::Order => ("orders", "order"),
        };
        let (key, by) = match &m.target {
            EntityRef::Id(id) => (id.to_string(), "id"),
            EntityRef::ExternalId(x) | EntityRef::Step(x) => (x.clone(), "externalId"),
        };
        let mut fields = vec![
            (field, json!({ "managerId": m.manager_id }).to_string()),
            ("by", by.to_string()),
        ];
        if let Some(site) = &self.site {
            fields.push(("site", site.clone()));
        }
        let path = format!("/api/v5/{plural}/{}/edit", path_segment(&key));
        let (status, _) = self.post_form(&path, &fields).await?;
        Ok(Delivered {
            status,
            note: None,
            result: None,
        })
    }

    /// The `customer` form field of `POST /customers/create`.
    pub fn customer_json(&self, c: &NewCustomer) -> Value {
        let mut m = Map::new();
        m.insert("externalId".into(), json!(c.external_id));
        m.insert("phones".into(), json!([{ "number": c.phone }]));
        if let Some(name) = &c.first_name {
            m.insert("firstName".into(), json!(name));
        }
        if let Some(id) = c.manager_id {
            m.insert("managerId".into(), json!(id));
        }
        if let Some(source) = &c.source {
            m.insert("source".into(), source_json(source));
        }
        Value::Object(m)
    }

    /// The `order` form field of `POST /orders/create`.
    pub fn order_json(&self, o: &NewOrder) -> Value {
        let mut m = Map::new();
        m.insert("externalId".into(), json!(o.external_id));
        m.insert("customer".into(), ref_json(&o.customer));
        m.insert("phone".into(), json!(o.phone));
        if let Some(id) = o.manager_id {
            m.insert("managerId".into(), json!(id));
        }
        if let Some(method) = &o.order_method {
            m.insert("orderMethod".into(), json!(method));
        }
        if let Some(status) = &o.status {
            m.insert("status".into(), json!(status));
        }
        if let Some(source) = &o.source {
            m.insert("source".into(), source_json(source));
        }
        if let Some(comment) = &o.comment {
            m.insert("managerComment".into(), json!(comment));
        }
        Value::Object(m)
    }

    /// The `task` form field of `POST /tasks/create`; the marker ends the commentary.
    pub fn task_json(&self, t: &NewTask) -> Value {
        let mut m = Map::new();
        m.insert("text".into(), json!(t.text));
        let commentary = match &t.commentary {
            Some(c) if !c.is_empty() => format!("{c}\n\n[{}]", t.marker),
            _ => format!("[{}]", t.marker),
        };
        m.insert("commentary".into(), json!(commentary));
        m.insert("performerId".into(), json!(t.performer_id));
        if let Some(c) = &t.customer {
            m.insert("customer".into(), ref_json(c));
        }
        if let Some(o) = &t.order {
            m.insert("order".into(), ref_json(o));
        }
        if let Some(phone) = &t.phone {
            m.insert("phone".into(), json!(phone));
        }
        if t.complete {
            m.insert("complete".into(), json!(true));
        }
        Value::Object(m)
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
        if !e.user_ids.is_empty() {
            m.insert("userIds".into(), json!(e.user_ids));
        }
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

    /// Waits for the rate limiter that governs `path`: telephony methods have their own
    /// budget instead of the key's general one (as in the official Go client's `rate.go`).
    async fn pace(&self, path: &str) {
        if path.starts_with(TELEPHONY) {
            self.telephony_limit.acquire().await;
        } else {
            self.limit.acquire().await;
        }
    }

    /// GETs with query parameters, returns the HTTP status and the `success: true` body.
    pub(crate) async fn get(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<(u16, Value), CrmError> {
        self.pace(path).await;
        let url = format!("{}{}", self.base, path);
        let request = self
            .http
            .get(&url)
            .header("X-API-KEY", self.api_key.expose())
            .query(query);
        self.finish(path, request).await
    }

    /// [`Self::post_form`] for the other modules of the CRM side.
    pub(crate) async fn post_form_fields(
        &self,
        path: &str,
        fields: &[(&str, String)],
    ) -> Result<(u16, Value), CrmError> {
        self.post_form(path, fields).await
    }

    /// POSTs form fields, returns the HTTP status and the parsed `success: true` body.
    async fn post_form(
        &self,
        path: &str,
        fields: &[(&str, String)],
    ) -> Result<(u16, Value), CrmError> {
        self.pace(path).await;
        let url = format!("{}{}", self.base, path);
        let request = self
            .http
            .post(&url)
            .header("X-API-KEY", self.api_key.expose())
            .form(fields);
        self.finish(path, request).await
    }

    async fn finish(
        &self,
        path: &str,
        request: reqwest::RequestBuilder,
    ) -> Result<(u16, Value), CrmError> {
        let response = match request.send().await {
            Ok(response) => response,
            Err(e) => {
                crate::metrics::crm_request(path, None);
                let text = transport_text(&e);
                self.answered(Some(text.clone()));
                return Err(CrmError::Transport(text));
            }
        };
        let status = response.status().as_u16();
        crate::metrics::crm_request(path, Some(status));
        self.answered(None);
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

/// A create refused because a record with this externalId exists: the earlier attempt's.
fn mentions_existing_external_id(e: &CrmError) -> bool {
    match e {
        CrmError::Rejected { message, .. } => {
            let m = message.to_ascii_lowercase();
            m.contains("externalid") && (m.contains("already exists") || m.contains("exists"))
        }
        _ => false,
    }
}

/// `{"id": N}` or `{"externalId": "…"}`, as orders and tasks name their customer/order. An
/// unresolved step is the externalId the earlier action created the record with.
fn ref_json(r: &EntityRef) -> Value {
    match r {
        EntityRef::Id(id) => json!({ "id": id }),
        EntityRef::ExternalId(x) | EntityRef::Step(x) => json!({ "externalId": x }),
    }
}

fn source_json(s: &Source) -> Value {
    serde_json::to_value(s).unwrap_or(Value::Null)
}

/// An id or externalId as one URL path segment.
pub(crate) fn path_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
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
