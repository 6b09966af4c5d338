//! Telephony: call events (the pop-up and its end), the call history upload
//! (deduplicated by `externalId`), and the responsible manager of a phone number.

use serde_json::{json, Map, Value};

use super::errors::{ok, ApiResult, Errors, SimError};
use super::fields::{
    add_err, as_string, as_u64, Fields, NOT_ARRAY, NOT_DATETIME, NOT_INT, NOT_STRING,
};
use super::records::{CallEvent, UploadedCall};
use super::routing::Params;
use super::server::{Inner, Observed};

const EVENT_TYPES: &[&str] = &["in", "out", "hangup"];
const HANGUP_STATUSES: &[&str] = &["answered", "busy", "cancel", "failed", "no answered"];
const CALL_TYPES: &[&str] = &["in", "out"];
const CALL_RESULTS: &[&str] = &[
    "answered",
    "busy",
    "failed",
    "no answer",
    "not allowed",
    "unknown",
];

fn parse_event(obj: &Map<String, Value>) -> Result<CallEvent, SimError> {
    let mut errors = Errors::new();
    let mut f = Fields::new(obj, "", &mut errors);
    let phone = f.req_str("phone");
    let kind = f.choice("type", EVENT_TYPES, true);
    let hangup_status = f.choice("hangupStatus", HANGUP_STATUSES, false);
    let mut codes = Vec::new();
    for (i, c) in f.array("codes").into_iter().flatten().enumerate() {
        match as_string(c) {
            Some(code) => codes.push(code),
            None => f.err(&format!("codes[{i}]"), NOT_STRING),
        }
    }
    let mut user_ids = Vec::new();
    for (i, u) in f.array("userIds").into_iter().flatten().enumerate() {
        match as_u64(u) {
            Some(id) => user_ids.push(id),
            None => f.err(&format!("userIds[{i}]"), NOT_INT),
        }
    }
    let call_external_id = f.str("callExternalId");
    let external_phone = f.str("externalPhone");
    let site = f.str("site");
    let web_analytics_data = f
        .object("webAnalyticsData")
        .map(|m| Value::Object(m.clone()));
    match (phone, kind) {
        (Some(phone), Some(r#type)) if errors.is_empty() => Ok(CallEvent {
            phone,
            r#type,
            codes,
            user_ids,
            hangup_status,
            call_external_id,
            external_phone,
            site,
            web_analytics_data,
        }),
        _ => Err(SimError::entity(errors)),
    }
}

fn parse_call(obj: &Map<String, Value>, prefix: &str, errors: &mut Errors) -> Option<UploadedCall> {
    let mut f = Fields::new(obj, prefix, errors);
    let date = f.req_str("date");
    let date = date.filter(|d| {
        let valid = chrono::NaiveDateTime::parse_from_str(d, "%Y-%m-%d %H:%M:%S").is_ok();
        if !valid {
            f.err("date", NOT_DATETIME);
        }
        valid
    });
    let kind = f.choice("type", CALL_TYPES, true);
    let phone = f.req_str("phone");
    let call = UploadedCall {
        date: date.unwrap_or_default(),
        r#type: kind.unwrap_or_default(),
        phone: phone.unwrap_or_default(),
        code: f.str("code"),
        user_id: f.u64("userId"),
        result: f.choice("result", CALL_RESULTS, false),
        duration: f.u64("duration"),
        duration_waiting: f.u64("durationWaiting"),
        external_id: f.str("externalId"),
        record_url: f.str("recordUrl"),
        external_phone: f.str("externalPhone"),
        site: f.str("site"),
        extra: f.rest(&[
            "date",
            "type",
            "phone",
            "code",
            "userId",
            "result",
            "duration",
            "durationWaiting",
            "externalId",
            "recordUrl",
            "externalPhone",
            "site",
        ]),
    };
    Some(call)
}

impl Inner {
    pub(super) fn call_event(&self, p: &Params) -> ApiResult {
        let event = parse_event(&p.json_object("event")?)?;
        let mut db = self.db();
        let not_exist_codes: Vec<&String> = event
            .codes
            .iter()
            .filter(|c| !db.codes.contains_key(*c))
            .collect();
        let not_exist_users: Vec<u64> = event
            .user_ids
            .iter()
            .copied()
            .filter(|u| db.user(*u).is_none())
            .collect();
        let body = json!({
            "success": true,
            "notExistCodes": not_exist_codes,
            "notExistUsers": not_exist_users,
        });
        if let Some(arrived) = p.arrived {
            self.observe(Observed::CallEvent {
                arrived,
                r#type: event.r#type.clone(),
                call_external_id: event.call_external_id.clone(),
            });
        }
        db.call_events.push(event);
        Ok(ok(body))
    }

    pub(super) fn calls_upload(&self, p: &Params) -> ApiResult {
        let raw = p.json("calls")?;
        let Value::Array(items) = raw else {
            return Err(SimError::entity1("calls", NOT_ARRAY));
        };
        let mut errors = Errors::new();
        let mut calls = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let prefix = format!("calls[{i}]");
            match item {
                Value::Object(obj) => calls.extend(parse_call(obj, &prefix, &mut errors)),
                _ => add_err(&mut errors, &prefix, "This value should be of type object."),
            }
        }
        if !errors.is_empty() {
            return Err(SimError::entity(errors));
        }
        let mut db = self.db();
        let mut processed = 0u64;
        let mut duplicates = Vec::new();
        for call in calls {
            if let Some(ext) = &call.external_id {
                if !db.call_external_ids.insert(ext.clone()) {
                    duplicates.push(ext.clone());
                    continue;
                }
            }
            processed += 1;
            if let Some(arrived) = p.arrived {
                self.observe(Observed::CallUploaded {
                    arrived,
                    external_id: call.external_id.clone(),
                    result: call.result.clone(),
                });
            }
            db.calls.push(call);
        }
        Ok(ok(json!({
            "success": true,
            "processedCallsCount": processed,
            "duplicateCalls": duplicates,
        })))
    }

    pub(super) fn telephony_manager(&self, p: &Params) -> ApiResult {
        let phone = p
            .get("phone")
            .filter(|s| !s.is_empty())
            .ok_or_else(|| SimError::missing_param("phone"))?;
        let details = matches!(p.get("details"), Some("1") | Some("true"));
        let db = self.db();
        let customer = db
            .customers_by_phone(phone)
            .first()
            .and_then(|&id| db.customer(id));
        let mut body = Map::new();
        body.insert("success".into(), json!(true));
        if let Some(manager) = customer.and_then(|c| c.manager_id).and_then(|m| db.user(m)) {
            let code = db.user_codes.get(&manager.id).and_then(|c| c.first());
            let mut m = json!({
                "id": manager.id,
                "firstName": manager.first_name,
                "lastName": manager.last_name,
                "email": format!("user{}@example.com", manager.id),
            });
            if let (Value::Object(obj), Some(code)) = (&mut m, code) {
                obj.insert("code".into(), json!(code));
            }
            body.insert("manager".into(), m);
        }
        if details {
            let digits: String = phone.chars().filter(char::is_ascii_digit).collect();
            let base = &self.base_url;
            let mut links = Map::new();
            links.insert(
                "newOrderLink".into(),
                json!(format!("{base}/orders/add?phone={digits}")),
            );
            links.insert(
                "newCustomerLink".into(),
                json!(format!("{base}/customers/add?phone={digits}")),
            );
            if let Some(c) = customer {
                body.insert("customer".into(), db.customer_json(c));
                links.insert(
                    "customerLink".into(),
                    json!(format!("{base}/customers/{}", c.id)),
                );
                let last = db
                    .orders_by_customer
                    .get(&c.id)
                    .and_then(|ids| ids.iter().max());
                if let Some(order) = last {
                    links.insert(
                        "lastOrderLink".into(),
                        json!(format!("{base}/orders/{order}/edit")),
                    );
                }
            }
            body.insert("links".into(), Value::Object(links));
        }
        Ok(ok(Value::Object(body)))
    }
}
