//! The request bodies of API v5, as `retailcrm/api-client-php` models them: customers,
//! orders, tasks, pop-up call events and call records (docs/retailcrm.md).

use serde_json::{json, Map, Value};

use super::RetailCrm;
use crate::actions::{
    CallEvent, CallEventType, CallRecord, CallResult, EntityRef, HangupStatus, NewCustomer,
    NewOrder, NewTask, Source,
};
use crate::call::Direction;

impl RetailCrm {
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
