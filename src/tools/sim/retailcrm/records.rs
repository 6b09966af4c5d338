//! What the account holds and the API shows, as the simulator keeps it: users, calls,
//! customers, orders, tasks, the request log, and [`SimState`], a snapshot of them all.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A CRM user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SimUser {
    pub id: u64,
    pub first_name: String,
    pub last_name: String,
    /// Extension code from the user's profile.
    pub code: Option<String>,
    pub is_manager: bool,
    pub active: bool,
}

impl SimUser {
    /// An active manager with an extension code.
    pub fn manager(id: u64, first_name: &str, last_name: &str, code: &str) -> SimUser {
        SimUser {
            id,
            first_name: first_name.to_string(),
            last_name: last_name.to_string(),
            code: Some(code.to_string()),
            is_manager: true,
            active: true,
        }
    }
}

/// A snapshot of what the CRM has received and holds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SimState {
    pub call_events: Vec<CallEvent>,
    pub calls: Vec<UploadedCall>,
    pub customers: Vec<Customer>,
    pub orders: Vec<Order>,
    pub tasks: Vec<Task>,
    pub requests: Vec<RequestLog>,
    pub integration_modules: Vec<Value>,
}

/// One `POST /telephony/call/event`, as received.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CallEvent {
    pub phone: String,
    pub r#type: String,
    #[serde(default)]
    pub codes: Vec<String>,
    #[serde(default)]
    pub user_ids: Vec<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hangup_status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub call_external_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_phone: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub web_analytics_data: Option<Value>,
}

/// One call of `POST /telephony/calls/upload` that was not a duplicate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UploadedCall {
    pub date: String,
    pub r#type: String,
    pub phone: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_waiting: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_phone: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site: Option<String>,
    /// Any other field sent (`source`, `clientId`, ...).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `{number}` in a customer's `phones`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Phone {
    pub number: String,
}

/// A reference to a customer (`{id, externalId}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EntityRef {
    pub id: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
}

/// A reference to an order (`{id, number, externalId}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderRef {
    pub id: u64,
    pub number: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
}

/// A customer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Customer {
    pub id: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patronymic: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default)]
    pub phones: Vec<Phone>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manager_id: Option<u64>,
    pub site: String,
    pub created_at: String,
    /// Any other field sent (`source`, `customFields`, `vip`, ...).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// An order. In API answers `customer` is the full customer object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Order {
    pub id: u64,
    pub number: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
    pub status: String,
    pub site: String,
    pub created_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_method: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manager_id: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patronymic: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer: Option<EntityRef>,
    /// Any other field sent (`items`, `source`, `customFields`, `managerComment`, ...).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Task {
    pub id: u64,
    pub text: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commentary: Option<String>,
    /// `Y-m-d H:i`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub datetime: Option<String>,
    pub created_at: String,
    pub complete: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creator: Option<u64>,
    pub performer: u64,
    pub performer_id: u64,
    pub performer_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer: Option<EntityRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order: Option<OrderRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone_site: Option<String>,
}

/// One answered request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestLog {
    pub method: String,
    pub path: String,
    pub status: u16,
    #[serde(with = "rfc3339")]
    pub at: chrono::DateTime<chrono::Utc>,
}

mod rfc3339 {
    use chrono::{DateTime, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(at: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&at.to_rfc3339())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        let raw = String::deserialize(d)?;
        DateTime::parse_from_rfc3339(&raw)
            .map(|t| t.with_timezone(&Utc))
            .map_err(serde::de::Error::custom)
    }
}
