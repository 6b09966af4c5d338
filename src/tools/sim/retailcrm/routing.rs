//! From a request to what it asks: the route (method and path), and its query and form
//! parameters read the PHP way, with paging.

use std::collections::HashMap;
use std::time::Instant;

use axum::http::Method;
use serde_json::{json, Map, Value};

use super::errors::SimError;
use super::fields::{entity_object, CHOICE, NOT_JSON};

pub(super) enum Route {
    Credentials,
    ApiVersions,
    CallEvent,
    CallsUpload,
    TelephonyManager,
    Users,
    User(u64),
    UserStatus(u64),
    Statuses,
    StatusGroups,
    Sites,
    OrderMethods,
    Customers,
    CustomerCreate,
    Customer(String),
    CustomerEdit(String),
    Orders,
    OrderCreate,
    Order(String),
    OrderEdit(String),
    Tasks,
    TaskCreate,
    Task(u64),
    TaskEdit(u64),
    Module(String),
    ModuleEdit(String),
}

impl Route {
    pub(super) fn is_telephony(&self) -> bool {
        matches!(
            self,
            Route::CallEvent | Route::CallsUpload | Route::TelephonyManager
        )
    }
}

pub(super) fn resolve(method: &Method, path: &str) -> Result<Route, SimError> {
    let (route, allowed) = match path {
        "/api/credentials" => (Route::Credentials, Method::GET),
        "/api/api-versions" => (Route::ApiVersions, Method::GET),
        _ => {
            let rest = path
                .strip_prefix("/api/v5/")
                .ok_or_else(SimError::method_not_found)?;
            let segs: Vec<&str> = rest.split('/').collect();
            resolve_v5(method, &segs)?
        }
    };
    if *method != allowed {
        return Err(SimError::method_not_allowed());
    }
    Ok(route)
}

fn resolve_v5(method: &Method, segs: &[&str]) -> Result<(Route, Method), SimError> {
    let id = |s: &str| s.parse::<u64>().map_err(|_| SimError::method_not_found());
    let x = |s: &str| percent_decode(s);
    let post = *method == Method::POST;
    Ok(match segs {
        ["telephony", "call", "event"] => (Route::CallEvent, Method::POST),
        ["telephony", "calls", "upload"] => (Route::CallsUpload, Method::POST),
        ["telephony", "manager"] => (Route::TelephonyManager, Method::GET),
        ["users"] => (Route::Users, Method::GET),
        ["users", u] => (Route::User(id(u)?), Method::GET),
        ["users", u, "status"] => (Route::UserStatus(id(u)?), Method::POST),
        ["reference", "statuses"] => (Route::Statuses, Method::GET),
        ["reference", "status-groups"] => (Route::StatusGroups, Method::GET),
        ["reference", "sites"] => (Route::Sites, Method::GET),
        ["reference", "order-methods"] => (Route::OrderMethods, Method::GET),
        ["customers"] => (Route::Customers, Method::GET),
        ["customers", "create"] if post => (Route::CustomerCreate, Method::POST),
        ["customers", c] if !c.is_empty() => (Route::Customer(x(c)), Method::GET),
        ["customers", c, "edit"] if !c.is_empty() => (Route::CustomerEdit(x(c)), Method::POST),
        ["orders"] => (Route::Orders, Method::GET),
        ["orders", "create"] if post => (Route::OrderCreate, Method::POST),
        ["orders", o] if !o.is_empty() => (Route::Order(x(o)), Method::GET),
        ["orders", o, "edit"] if !o.is_empty() => (Route::OrderEdit(x(o)), Method::POST),
        ["tasks"] => (Route::Tasks, Method::GET),
        ["tasks", "create"] => (Route::TaskCreate, Method::POST),
        ["tasks", t] => (Route::Task(id(t)?), Method::GET),
        ["tasks", t, "edit"] => (Route::TaskEdit(id(t)?), Method::POST),
        ["integration-modules", m] if !m.is_empty() => (Route::Module(x(m)), Method::GET),
        ["integration-modules", m, "edit"] if !m.is_empty() => {
            (Route::ModuleEdit(x(m)), Method::POST)
        }
        _ => return Err(SimError::method_not_found()),
    })
}

pub(super) fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Query and form parameters; PHP bracket keys are flattened to dotted keys:
/// `filter[ids][]` and `filter[ids][0]` → `filter.ids`, `filter[name]` → `filter.name`.
#[derive(Default)]
pub(super) struct Params {
    pub(super) map: HashMap<String, Vec<String>>,
    /// When the request reached the simulator (before any `latency`), for observers.
    pub(super) arrived: Option<Instant>,
}

impl Params {
    pub(super) fn add_urlencoded(&mut self, raw: &[u8]) {
        if raw.is_empty() {
            return;
        }
        if let Ok(pairs) = serde_urlencoded::from_bytes::<Vec<(String, String)>>(raw) {
            for (k, v) in pairs {
                self.map.entry(normalize_key(&k)).or_default().push(v);
            }
        }
    }

    pub(super) fn get(&self, key: &str) -> Option<&str> {
        self.map
            .get(key)
            .and_then(|v| v.first())
            .map(String::as_str)
    }

    /// A filter value, ignoring empty ones.
    pub(super) fn filter(&self, name: &str) -> Option<&str> {
        self.get(&format!("filter.{name}"))
            .filter(|v| !v.is_empty())
    }

    /// A list filter (`filter[ids][]=1&filter[ids][]=2`), ignoring empty values.
    pub(super) fn filter_list(&self, name: &str) -> Vec<&str> {
        self.map
            .get(&format!("filter.{name}"))
            .map(|v| {
                v.iter()
                    .map(String::as_str)
                    .filter(|s| !s.is_empty())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// A boolean filter given as 0/1 (or false/true).
    pub(super) fn filter_bool(&self, name: &str) -> Result<Option<bool>, SimError> {
        match self.filter(name) {
            None => Ok(None),
            Some("1") | Some("true") => Ok(Some(true)),
            Some("0") | Some("false") => Ok(Some(false)),
            Some(_) => Err(SimError::input(&format!("filter[{name}]"), CHOICE)),
        }
    }

    /// A form field holding JSON.
    pub(super) fn json(&self, name: &str) -> Result<Value, SimError> {
        let raw = self
            .get(name)
            .ok_or_else(|| SimError::missing_param(name))?;
        serde_json::from_str(raw).map_err(|_| SimError::entity1(name, NOT_JSON))
    }

    /// A form field holding a JSON object.
    pub(super) fn json_object(&self, name: &str) -> Result<Map<String, Value>, SimError> {
        entity_object(self.json(name)?, name)
    }

    /// `by=id|externalId` (default `externalId`).
    pub(super) fn by_id(&self) -> Result<bool, SimError> {
        match self.get("by") {
            None | Some("") | Some("externalId") => Ok(false),
            Some("id") => Ok(true),
            Some(_) => Err(SimError::input(
                "by",
                "Value must be \"id\" or \"externalId\".",
            )),
        }
    }
}

pub(super) fn normalize_key(key: &str) -> String {
    let Some(open) = key.find('[') else {
        return key.to_string();
    };
    let mut out = key[..open].to_string();
    for seg in key[open..].split('[').skip(1) {
        let seg = seg.strip_suffix(']').unwrap_or(seg);
        if seg.is_empty() || seg.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        out.push('.');
        out.push_str(seg);
    }
    out
}

pub(super) struct Page {
    limit: usize,
    page: usize,
}

impl Page {
    pub(super) fn from(p: &Params) -> Result<Page, SimError> {
        let limit = match p.get("limit").filter(|s| !s.is_empty()) {
            None => 20,
            Some(s) => match s.parse::<usize>() {
                Ok(n @ (20 | 50 | 100)) => n,
                _ => return Err(SimError::input("limit", CHOICE)),
            },
        };
        let page = match p.get("page").filter(|s| !s.is_empty()) {
            None => 1,
            Some(s) => match s.parse::<usize>() {
                Ok(n) if n >= 1 => n,
                _ => {
                    return Err(SimError::input(
                        "page",
                        "This value should be greater than or equal to 1.",
                    ))
                }
            },
        };
        Ok(Page { limit, page })
    }

    /// The items of this page, and the pagination object.
    pub(super) fn slice<T: Copy>(&self, all: &[T]) -> (Vec<T>, Value) {
        let total = all.len();
        let start = self.limit.saturating_mul(self.page - 1).min(total);
        let end = start.saturating_add(self.limit).min(total);
        let pagination = json!({
            "limit": self.limit,
            "totalCount": total,
            "currentPage": self.page,
            "totalPageCount": total.div_ceil(self.limit),
        });
        (all[start..end].to_vec(), pagination)
    }
}
