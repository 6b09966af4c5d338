//! The request pipeline: every request counted in flight, delayed by the configured
//! latency, matched against injected faults, routed, authenticated by key, rate limited,
//! observed, dispatched to its resource, answered, and logged.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;
use tokio::sync::watch;

use super::db::Db;
use super::errors::{error_response, ok, rate_limited_response, ApiResult, SimError};
use super::faults::{fault_response, Fault, FaultEntry};
use super::rate_limit::{KeyBuckets, RateLimit};
use super::records::RequestLog;
use super::reference::{
    credentials_json, order_methods_json, sites_json, status_groups_json, statuses_json,
};
use super::routing::{resolve, Params, Route};
use crate::tools::sim::lock;

/// How many requests [`SimState::requests`](super::SimState::requests) keeps (oldest dropped first).
pub const REQUEST_LOG_CAP: usize = 100_000;

/// What an observer (see [`RetailCrmSim::observe`](super::RetailCrmSim::observe)) hears of, as it is accepted.
#[derive(Debug, Clone)]
pub enum Observed {
    /// Any API request the rate limit let through, on the telephony budget or the
    /// general one.
    Request {
        arrived: Instant,
        telephony: bool,
        /// Method and path, e.g. `GET /api/v5/customers`.
        request: String,
    },
    /// `POST /telephony/call/event` (a pop-up or its end).
    CallEvent {
        arrived: Instant,
        r#type: String,
        call_external_id: Option<String>,
    },
    /// One call of `POST /telephony/calls/upload` (the call history), not a duplicate.
    CallUploaded {
        arrived: Instant,
        external_id: Option<String>,
        result: Option<String>,
    },
}

/// Everything a request may read or change: the settings, the account's data, the
/// queued faults, the rate limiter's buckets, the request log, the observer.
pub(super) struct Inner {
    pub(super) api_key: String,
    pub(super) rate_limit: Option<RateLimit>,
    pub(super) latency: Option<Duration>,
    pub(super) base_url: String,
    pub(super) db: Mutex<Db>,
    pub(super) faults: Mutex<VecDeque<FaultEntry>>,
    pub(super) limiter: Mutex<HashMap<String, KeyBuckets>>,
    pub(super) log: Mutex<VecDeque<RequestLog>>,
    /// Requests received and not answered yet.
    pub(super) in_flight: std::sync::atomic::AtomicUsize,
    pub(super) observer: Mutex<Option<tokio::sync::mpsc::UnboundedSender<Observed>>>,
    pub(super) shutdown: watch::Sender<bool>,
}

pub(super) async fn handle(
    State(sim): State<Arc<Inner>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    use std::sync::atomic::Ordering;
    /// Counts the request out however it ends (a client that hangs up drops this task).
    struct Counted<'a>(&'a std::sync::atomic::AtomicUsize);
    impl Drop for Counted<'_> {
        fn drop(&mut self) {
            self.0.fetch_sub(1, Ordering::SeqCst);
        }
    }
    let arrived = Instant::now();
    sim.in_flight.fetch_add(1, Ordering::SeqCst);
    let _counted = Counted(&sim.in_flight);
    if let Some(latency) = sim.latency {
        tokio::time::sleep(latency).await;
    }
    let response = sim.process(&method, &uri, &headers, &body, arrived).await;
    sim.record(&method, uri.path(), response.status().as_u16());
    response
}

impl Inner {
    pub(super) async fn process(
        &self,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        body: &[u8],
        arrived: Instant,
    ) -> Response {
        let path = uri.path();
        match self.take_fault(path) {
            Some(Fault::Delay { delay, .. }) => tokio::time::sleep(delay).await,
            Some(fault) => return fault_response(fault),
            None => {}
        }
        let route = match resolve(method, path) {
            Ok(route) => route,
            Err(e) => return error_response(&e),
        };
        let mut params = Params {
            arrived: Some(arrived),
            ..Params::default()
        };
        params.add_urlencoded(uri.query().unwrap_or("").as_bytes());
        if *method == Method::POST {
            params.add_urlencoded(body);
        }
        let key = headers
            .get("x-api-key")
            .and_then(|v| v.to_str().ok())
            .or_else(|| params.get("apiKey"))
            .filter(|k| !k.is_empty());
        match key {
            None => return error_response(&SimError::missing_key()),
            Some(k) if k != self.api_key => return error_response(&SimError::wrong_key()),
            Some(k) => {
                if !self.allow(k, route.is_telephony()) {
                    return rate_limited_response(None);
                }
                self.observe(Observed::Request {
                    arrived,
                    telephony: route.is_telephony(),
                    request: format!("{method} {path}"),
                });
            }
        }
        match self.dispatch(route, &params) {
            Ok((status, body)) => (status, Json(body)).into_response(),
            Err(e) => error_response(&e),
        }
    }

    fn record(&self, method: &Method, path: &str, status: u16) {
        let entry = RequestLog {
            method: method.as_str().to_string(),
            path: path.to_string(),
            status,
            at: chrono::Utc::now(),
        };
        let mut log = lock(&self.log);
        if log.len() >= REQUEST_LOG_CAP {
            log.pop_front();
        }
        log.push_back(entry);
    }

    fn take_fault(&self, path: &str) -> Option<Fault> {
        let mut faults = lock(&self.faults);
        let pos = faults.iter().position(|f| f.matches(path))?;
        let entry = faults.get_mut(pos)?;
        entry.remaining -= 1;
        let fault = entry.fault.clone();
        if entry.remaining == 0 {
            faults.remove(pos);
        }
        Some(fault)
    }

    fn allow(&self, key: &str, telephony: bool) -> bool {
        let Some(limit) = self.rate_limit else {
            return true;
        };
        let now = Instant::now();
        let mut limiter = lock(&self.limiter);
        if !limiter.contains_key(key) {
            limiter.insert(key.to_string(), KeyBuckets::new(limit, now));
        }
        match limiter.get_mut(key) {
            Some(b) if telephony => b.telephony.take(limit.telephony_per_sec, now),
            Some(b) => b.general.take(limit.per_sec, now),
            None => true,
        }
    }

    fn dispatch(&self, route: Route, p: &Params) -> ApiResult {
        match route {
            Route::Credentials => Ok(ok(credentials_json())),
            Route::ApiVersions => Ok(ok(
                json!({"success": true, "versions": ["3.0", "4.0", "5.0"]}),
            )),
            Route::CallEvent => self.call_event(p),
            Route::CallsUpload => self.calls_upload(p),
            Route::TelephonyManager => self.telephony_manager(p),
            Route::Users => self.users(p),
            Route::User(id) => self.user(id),
            Route::UserStatus(id) => self.user_status(id, p),
            Route::Statuses => Ok(ok(statuses_json())),
            Route::StatusGroups => Ok(ok(status_groups_json())),
            Route::Sites => Ok(ok(sites_json(&self.base_url))),
            Route::OrderMethods => Ok(ok(order_methods_json())),
            Route::Customers => self.customers(p),
            Route::CustomerCreate => self.customer_create(p),
            Route::Customer(x) => self.customer(&x, p),
            Route::CustomerEdit(x) => self.customer_edit(&x, p),
            Route::Orders => self.orders(p),
            Route::OrderCreate => self.order_create(p),
            Route::Order(x) => self.order(&x, p),
            Route::OrderEdit(x) => self.order_edit(&x, p),
            Route::Tasks => self.tasks(p),
            Route::TaskCreate => self.task_create(p),
            Route::Task(id) => self.task(id),
            Route::TaskEdit(id) => self.task_edit(id, p),
            Route::Module(code) => self.module(&code),
            Route::ModuleEdit(code) => self.module_edit(&code, p),
        }
    }
}

impl Inner {
    pub(super) fn db(&self) -> MutexGuard<'_, Db> {
        lock(&self.db)
    }

    pub(super) fn observe(&self, what: Observed) {
        if let Some(tx) = lock(&self.observer).as_ref() {
            let _ = tx.send(what);
        }
    }
}
