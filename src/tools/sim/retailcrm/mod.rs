//! A stateful stand-in for retailCRM's API v5, served over real HTTP on loopback.
//!
//! `callbridge demo` starts it so a new user can watch calls turn into CRM records without an
//! account; the integration tests run the real daemon against it; a load generator can hammer
//! it (every hot path is an index lookup under a short, never-awaited `std::sync::Mutex`).
//!
//! It speaks the wire protocol of the real service: paths under `/api/v5/`, the key in the
//! `X-API-KEY` header or the `apiKey` GET/POST parameter, POST bodies as
//! `application/x-www-form-urlencoded` with nested objects as JSON strings in one field
//! (`event=`, `calls=`, `customer=`, `order=`, `task=`, `integrationModule=`), GET filters in
//! PHP bracket syntax (`filter[ids][]=1&filter[name]=..&limit=20&page=1`), answers
//! `{"success":true,..}` or `{"success":false,"errorMsg":"..","errors":{..}}`.
//!
//! Resources, by section below: telephony (call events, call upload, responsible manager),
//! users, reference books (statuses, status groups, sites, order methods), customers, orders,
//! tasks, integration modules (the module's `additionalCodes` become the extension → user map),
//! plus `GET /api/credentials` and `GET /api/api-versions`.
//!
//! # What was checked against official sources, and what is a guess
//!
//! Confirmed (source in brackets):
//! - Auth by `X-API-KEY` header or `apiKey` GET/POST parameter; GET parameters in PHP bracket
//!   syntax; POST as form fields holding JSON strings; datetimes `Y-m-d H:i:s`
//!   [help.retailcrm.pro/Developers/ApiRules and its docs.simla.com copy].
//! - The `errorMsg` strings `"apiKey" is missing.`, `Wrong "apiKey" value.`, `Access denied.`,
//!   `Errors in the entity format`, `Validation error`, `Parameter '<name>' is missing`
//!   [retailcrm/api-client-php `src/Factory/ApiExceptionFactory.php`; retailcrm/api-client-go
//!   `error.go`].
//! - A wrong key answers HTTP 403 with `Wrong "apiKey" value.` [a Go test written for the early
//!   api-client-go API that called the live demo.retailcrm.ru with key `111` and asserted both;
//!   the index did not name its repository].
//! - `Errors in the entity format` comes with HTTP 400 [retailcrm/api-client-php issue #179, a
//!   real server answer surfacing as `ValidationException(code: 400)`].
//! - Creates answer HTTP 201, edits and reads 200 [retailcrm/api-client-go `v5_tests/*`, run
//!   against a live account: `CustomerCreate`/`TaskCreate` expect 201, `CustomerEdit` 200].
//! - Rate: 10 requests/s per key, 40/s for `/telephony*` [retailcrm/api-client-go `rate.go`,
//!   `RPS`/`TelephonyRPS`: the official client's own limiter, per key and per `/telephony`
//!   URI prefix; the "API handling rate" section of ApiRules was not in the stored copy].
//! - Response shapes: call event `{success, notExistCodes, notExistUsers}`, calls upload
//!   `{success, processedCallsCount, duplicateCalls}`, manager `{manager{id,firstName,lastName,
//!   patronymic,email,code}, customer{..,phones[{number}]}, links{newOrderLink,newCustomerLink,
//!   ..}}`, task fields `performer`, `performerId`, `performerType`, `createdAt`,
//!   `completedAt` [retailcrm/api-client-php `tests/src/ResourceGroup/TelephonyTest.php`,
//!   `src/Model/Entity/Tasks/Task.php`, and the response models the project's reference
//!   notes cite].
//! - Enumerations: call event `type` in|out|hangup, `hangupStatus` answered|busy|cancel|failed|
//!   no answered, call `result` answered|busy|failed|no answer|not allowed|unknown (so `missed`
//!   is invalid), call `type` in|out [retailcrm/api-client-php `src/Enum/Telephony/*`, as cited
//!   by the project's reference notes; not re-read here].
//!
//! Observed by third parties against live accounts, so likely but not official: unknown
//! method → HTTP 404 `API method not found`; missing form field → HTTP 400
//! `Parameter 'customer' is missing`; integration module errors
//! `baseUrl: This value should not be blank` and `logo: Logo image must be svg`
//! [Vochi-dev/v3 `retailcrm.md`, `integration.md`]; pagination
//! `{limit,totalCount,currentPage,totalPageCount}` with `totalPageCount: 0` for an empty list
//! [the retailcrm-api gem's README example].
//!
//! Guesses (UNCONFIRMED; change them when a source says otherwise):
//! - Over the rate limit: HTTP 503 with `{"success":false,"errorMsg":"Service temporary
//!   unavailable"}` and no `Retry-After`. 503 follows the legacy official PHP client (503 →
//!   `LimitException`) and nginx's `limit_req` default; the body wording is that client's.
//!   The official Go client also retries on 429, so `Fault::ApiError { status: 429, .. }` is
//!   there to test that answer.
//! - A missing key answers 403 like a wrong one; `Not found` answers 404; a wrong HTTP method
//!   answers 405 `Method Not Allowed` (the shape the PHP client's error test mocks).
//! - Bad JSON in a form field, a missing required field or a bad enum value: HTTP 400
//!   `Errors in the entity format` with `errors` keyed by field (`calls[0][result]` inside a
//!   batch) and Symfony's messages; bad `limit`/`page`: 400 `Errors in the input parameters`.
//! - Duplicate `externalId` on create: 400 entity-format error with
//!   `errors.externalId = "Customer with externalId=<x> already exists."` (the wording seen on
//!   `/customers/upload` in api-client-php PR #231; for `create` it is not confirmed).
//! - Calls are deduplicated by `externalId`; `processedCallsCount` counts the new ones only.
//! - `filter[name]` matches names and, for phone-like values, phone numbers by their last ten
//!   digits; an order created without `customer` creates one from its contact fields; lists
//!   of customers, orders and tasks come newest first.
//! - The default status groups and statuses and the order methods are a recollection of a
//!   fresh account, not a copy of one. `Status503` faults answer an nginx-style HTML page.
//!
//! Everything is in memory; ids are sequential from 1 per resource. The request log keeps the
//! last [`REQUEST_LOG_CAP`] requests.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::tools::sim::lock;

/// The API key of [`SimOptions::default`].
pub const DEFAULT_API_KEY: &str = "demo-key";
/// The only store (site) of the simulated account.
pub const DEFAULT_SITE: &str = "demo";
/// How many requests [`SimState::requests`] keeps (oldest dropped first).
pub const REQUEST_LOG_CAP: usize = 100_000;

// ---------------------------------------------------------------------------------------------
// Public API
// ---------------------------------------------------------------------------------------------

/// How the simulator behaves.
#[derive(Debug, Clone, PartialEq)]
pub struct SimOptions {
    /// The only key the account accepts.
    pub api_key: String,
    /// `None` disables rate limiting.
    pub rate_limit: Option<RateLimit>,
    /// The account's users; their `code` is the extension set in the user's profile.
    pub users: Vec<SimUser>,
    /// Added delay before each answer.
    pub latency: Option<Duration>,
}

impl Default for SimOptions {
    fn default() -> Self {
        SimOptions {
            api_key: DEFAULT_API_KEY.to_string(),
            rate_limit: Some(RateLimit::default()),
            users: vec![
                SimUser::manager(3, "Anna", "Ivanova", "101"),
                SimUser::manager(4, "Boris", "Petrov", "102"),
                SimUser::manager(7, "Svetlana", "Orlova (senior)", "107"),
            ],
            latency: None,
        }
    }
}

/// Requests per second per API key; telephony methods (`/api/v5/telephony/*`) have their own
/// budget. A rate of 0 means no limit for that class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub per_sec: u32,
    pub telephony_per_sec: u32,
}

impl RateLimit {
    /// The real service's limits, as the official Go client enforces them.
    pub const REAL: RateLimit = RateLimit {
        per_sec: 10,
        telephony_per_sec: 40,
    };
}

impl Default for RateLimit {
    fn default() -> Self {
        RateLimit::REAL
    }
}

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

/// What an observer (see [`RetailCrmSim::observe`]) hears of, as it is accepted.
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

/// A failure injected with [`RetailCrmSim::inject`], consumed by the next matching requests
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

/// An API error answer, also returned by the `seed_*` helpers.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("HTTP {status}: {error_msg}{}", errors_suffix(.errors))]
pub struct SimError {
    pub status: u16,
    pub error_msg: String,
    /// `Null` when the answer has no `errors`.
    pub errors: Value,
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

/// A running simulator; cheap to clone. It keeps serving until [`RetailCrmSim::shutdown`].
#[derive(Clone)]
pub struct RetailCrmSim {
    inner: Arc<Inner>,
    addr: SocketAddr,
}

impl std::fmt::Debug for RetailCrmSim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RetailCrmSim")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl RetailCrmSim {
    /// Binds `127.0.0.1:0` and serves in a spawned task.
    pub async fn start(opts: SimOptions) -> std::io::Result<RetailCrmSim> {
        RetailCrmSim::start_on(SocketAddr::from(([127, 0, 0, 1], 0)), opts).await
    }

    /// Binds `addr` and serves in a spawned task.
    pub async fn start_on(addr: SocketAddr, opts: SimOptions) -> std::io::Result<RetailCrmSim> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let (shutdown, mut stop) = watch::channel(false);
        let inner = Arc::new(Inner {
            api_key: opts.api_key,
            rate_limit: opts.rate_limit,
            latency: opts.latency,
            base_url: format!("http://{addr}"),
            db: Mutex::new(Db::new(opts.users)),
            faults: Mutex::new(VecDeque::new()),
            limiter: Mutex::new(HashMap::new()),
            log: Mutex::new(VecDeque::new()),
            in_flight: std::sync::atomic::AtomicUsize::new(0),
            observer: Mutex::new(None),
            shutdown,
        });
        let app = Router::new().fallback(handle).with_state(inner.clone());
        tokio::spawn(async move {
            let signal = async move {
                let _ = stop.wait_for(|stopped| *stopped).await;
            };
            if let Err(e) = axum::serve(listener, app)
                .with_graceful_shutdown(signal)
                .await
            {
                tracing::warn!(error = %e, "retailCRM simulator stopped serving");
            }
        });
        tracing::debug!(%addr, "retailCRM simulator listening");
        Ok(RetailCrmSim { inner, addr })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`, the account URL to configure (the API is under `/api/v5`).
    pub fn base_url(&self) -> String {
        self.inner.base_url.clone()
    }

    /// From now on, every accepted pop-up event and uploaded call is also sent here with
    /// the moment its request arrived (load runs measure latency from it). Replaces an
    /// earlier observer.
    pub fn observe(&self) -> tokio::sync::mpsc::UnboundedReceiver<Observed> {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        *lock(&self.inner.observer) = Some(tx);
        rx
    }

    /// How many requests are being answered right now (received, no answer sent yet).
    pub fn in_flight(&self) -> usize {
        self.inner
            .in_flight
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// A snapshot of everything received and held.
    pub fn state(&self) -> SimState {
        let requests = lock(&self.inner.log).iter().cloned().collect();
        let db = lock(&self.inner.db);
        SimState {
            call_events: db.call_events.clone(),
            calls: db.calls.clone(),
            customers: db.customers.clone(),
            orders: db.orders.clone(),
            tasks: db.tasks.clone(),
            requests,
            integration_modules: db.modules.iter().map(|(_, m)| m.clone()).collect(),
        }
    }

    /// Queues a fault; faults are matched in the order they were injected.
    pub fn inject(&self, fault: Fault) {
        let mut prefix = None;
        let mut fault = fault;
        while let Fault::OnPath {
            prefix: p,
            fault: inner,
        } = fault
        {
            prefix.get_or_insert(p);
            fault = *inner;
        }
        let times = match &fault {
            Fault::Status503 { times }
            | Fault::RateLimited { times, .. }
            | Fault::ApiError { times, .. }
            | Fault::Delay { times, .. } => *times,
            Fault::OnPath { .. } => 0,
        };
        if times > 0 {
            lock(&self.inner.faults).push_back(FaultEntry {
                prefix,
                fault,
                remaining: times,
            });
        }
    }

    /// Drops every queued fault.
    pub fn clear_faults(&self) {
        lock(&self.inner.faults).clear();
    }

    /// Creates a customer directly (same validation as `POST /customers/create`); returns its id.
    pub fn seed_customer(&self, customer: Value) -> Result<u64, SimError> {
        let obj = entity_object(customer, "customer")?;
        lock(&self.inner.db).create_customer(&obj, None)
    }

    /// Creates an order directly (same validation as `POST /orders/create`); returns its id.
    pub fn seed_order(&self, order: Value) -> Result<u64, SimError> {
        let obj = entity_object(order, "order")?;
        lock(&self.inner.db).create_order(&obj, None)
    }

    /// Creates a task directly (same validation as `POST /tasks/create`); returns its id.
    pub fn seed_task(&self, task: Value) -> Result<u64, SimError> {
        let obj = entity_object(task, "task")?;
        lock(&self.inner.db).create_task(&obj)
    }

    /// Stops accepting connections; requests in flight are finished.
    pub fn shutdown(&self) {
        self.inner.shutdown.send_replace(true);
    }
}

// ---------------------------------------------------------------------------------------------
// Transport: request pipeline, auth, rate limit, faults, errors
// ---------------------------------------------------------------------------------------------

struct Inner {
    api_key: String,
    rate_limit: Option<RateLimit>,
    latency: Option<Duration>,
    base_url: String,
    db: Mutex<Db>,
    faults: Mutex<VecDeque<FaultEntry>>,
    limiter: Mutex<HashMap<String, KeyBuckets>>,
    log: Mutex<VecDeque<RequestLog>>,
    /// Requests received and not answered yet.
    in_flight: std::sync::atomic::AtomicUsize,
    observer: Mutex<Option<tokio::sync::mpsc::UnboundedSender<Observed>>>,
    shutdown: watch::Sender<bool>,
}

async fn handle(
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
    async fn process(
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

type ApiResult = Result<(StatusCode, Value), SimError>;

fn ok(body: Value) -> (StatusCode, Value) {
    (StatusCode::OK, body)
}

fn created(body: Value) -> (StatusCode, Value) {
    (StatusCode::CREATED, body)
}

impl SimError {
    fn new(status: u16, error_msg: &str, errors: Value) -> SimError {
        SimError {
            status,
            error_msg: error_msg.to_string(),
            errors,
        }
    }
    fn missing_key() -> SimError {
        SimError::new(403, "\"apiKey\" is missing.", Value::Null)
    }
    fn wrong_key() -> SimError {
        SimError::new(403, "Wrong \"apiKey\" value.", Value::Null)
    }
    fn method_not_found() -> SimError {
        SimError::new(404, "API method not found", Value::Null)
    }
    fn method_not_allowed() -> SimError {
        SimError::new(405, "Method Not Allowed", Value::Null)
    }
    fn not_found() -> SimError {
        SimError::new(404, "Not found", Value::Null)
    }
    fn missing_param(name: &str) -> SimError {
        SimError::new(400, &format!("Parameter '{name}' is missing"), Value::Null)
    }
    fn entity(errors: Errors) -> SimError {
        SimError::new(400, "Errors in the entity format", Value::Object(errors))
    }
    fn entity1(field: &str, msg: &str) -> SimError {
        let mut errors = Errors::new();
        errors.insert(field.to_string(), Value::String(msg.to_string()));
        SimError::entity(errors)
    }
    fn input(field: &str, msg: &str) -> SimError {
        SimError::new(400, "Errors in the input parameters", json!({ field: msg }))
    }

    fn body(&self) -> Value {
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

fn error_response(e: &SimError) -> Response {
    let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, Json(e.body())).into_response()
}

const RATE_LIMIT_MSG: &str = "Service temporary unavailable";

fn rate_limited_response(retry_after_secs: Option<u32>) -> Response {
    let body = json!({"success": false, "errorMsg": RATE_LIMIT_MSG});
    let mut response = (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response();
    if let Some(secs) = retry_after_secs {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    response
}

const NGINX_503: &str =
    "<html>\r\n<head><title>503 Service Temporarily Unavailable</title></head>\r\n\
<body>\r\n<center><h1>503 Service Temporarily Unavailable</h1></center>\r\n\
<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n";

fn fault_response(fault: Fault) -> Response {
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

struct FaultEntry {
    prefix: Option<String>,
    fault: Fault,
    remaining: u32,
}

impl FaultEntry {
    fn matches(&self, path: &str) -> bool {
        match &self.prefix {
            None => true,
            Some(prefix) if prefix.starts_with("/api/") => path.starts_with(prefix.as_str()),
            Some(prefix) => path
                .strip_prefix("/api/v5")
                .is_some_and(|rest| rest.starts_with(prefix.as_str())),
        }
    }
}

/// Token buckets of one API key: a burst of up to one second's budget, refilled continuously.
struct KeyBuckets {
    general: Bucket,
    telephony: Bucket,
}

impl KeyBuckets {
    fn new(limit: RateLimit, now: Instant) -> KeyBuckets {
        KeyBuckets {
            general: Bucket {
                tokens: f64::from(limit.per_sec),
                last: now,
            },
            telephony: Bucket {
                tokens: f64::from(limit.telephony_per_sec),
                last: now,
            },
        }
    }
}

struct Bucket {
    tokens: f64,
    last: Instant,
}

impl Bucket {
    fn take(&mut self, per_sec: u32, now: Instant) -> bool {
        if per_sec == 0 {
            return true;
        }
        let rate = f64::from(per_sec);
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate).min(rate);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Routing and parameters
// ---------------------------------------------------------------------------------------------

enum Route {
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
    fn is_telephony(&self) -> bool {
        matches!(
            self,
            Route::CallEvent | Route::CallsUpload | Route::TelephonyManager
        )
    }
}

fn resolve(method: &Method, path: &str) -> Result<Route, SimError> {
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

fn percent_decode(s: &str) -> String {
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
struct Params {
    map: HashMap<String, Vec<String>>,
    /// When the request reached the simulator (before any `latency`), for observers.
    arrived: Option<Instant>,
}

impl Params {
    fn add_urlencoded(&mut self, raw: &[u8]) {
        if raw.is_empty() {
            return;
        }
        if let Ok(pairs) = serde_urlencoded::from_bytes::<Vec<(String, String)>>(raw) {
            for (k, v) in pairs {
                self.map.entry(normalize_key(&k)).or_default().push(v);
            }
        }
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.map
            .get(key)
            .and_then(|v| v.first())
            .map(String::as_str)
    }

    /// A filter value, ignoring empty ones.
    fn filter(&self, name: &str) -> Option<&str> {
        self.get(&format!("filter.{name}"))
            .filter(|v| !v.is_empty())
    }

    /// A list filter (`filter[ids][]=1&filter[ids][]=2`), ignoring empty values.
    fn filter_list(&self, name: &str) -> Vec<&str> {
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
    fn filter_bool(&self, name: &str) -> Result<Option<bool>, SimError> {
        match self.filter(name) {
            None => Ok(None),
            Some("1") | Some("true") => Ok(Some(true)),
            Some("0") | Some("false") => Ok(Some(false)),
            Some(_) => Err(SimError::input(&format!("filter[{name}]"), CHOICE)),
        }
    }

    /// A form field holding JSON.
    fn json(&self, name: &str) -> Result<Value, SimError> {
        let raw = self
            .get(name)
            .ok_or_else(|| SimError::missing_param(name))?;
        serde_json::from_str(raw).map_err(|_| SimError::entity1(name, NOT_JSON))
    }

    /// A form field holding a JSON object.
    fn json_object(&self, name: &str) -> Result<Map<String, Value>, SimError> {
        entity_object(self.json(name)?, name)
    }

    /// `by=id|externalId` (default `externalId`).
    fn by_id(&self) -> Result<bool, SimError> {
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

fn normalize_key(key: &str) -> String {
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

fn entity_object(v: Value, name: &str) -> Result<Map<String, Value>, SimError> {
    match v {
        Value::Object(m) => Ok(m),
        _ => Err(SimError::entity1(
            name,
            "This value should be of type object.",
        )),
    }
}

struct Page {
    limit: usize,
    page: usize,
}

impl Page {
    fn from(p: &Params) -> Result<Page, SimError> {
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
    fn slice<T: Copy>(&self, all: &[T]) -> (Vec<T>, Value) {
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

// ---------------------------------------------------------------------------------------------
// Entity field helpers (validation messages follow Symfony's wording)
// ---------------------------------------------------------------------------------------------

type Errors = Map<String, Value>;

const BLANK: &str = "This value should not be blank.";
const CHOICE: &str = "The value you selected is not a valid choice.";
const NOT_JSON: &str = "This value should be valid JSON.";
const NOT_STRING: &str = "This value should be of type string.";
const NOT_INT: &str = "This value should be of type integer.";
const NOT_BOOL: &str = "This value should be of type boolean.";
const NOT_ARRAY: &str = "This value should be of type array.";
const NOT_DATETIME: &str = "This value is not a valid datetime.";

fn add_err(errors: &mut Errors, key: &str, msg: &str) {
    errors
        .entry(key.to_string())
        .or_insert_with(|| Value::String(msg.to_string()));
}

fn key_path(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_string()
    } else {
        format!("{prefix}[{key}]")
    }
}

/// Reads the fields of one JSON object, collecting errors under `prefix`.
struct Fields<'a, 'e> {
    obj: &'a Map<String, Value>,
    prefix: String,
    errors: &'e mut Errors,
}

impl<'a, 'e> Fields<'a, 'e> {
    fn new(obj: &'a Map<String, Value>, prefix: &str, errors: &'e mut Errors) -> Fields<'a, 'e> {
        Fields {
            obj,
            prefix: prefix.to_string(),
            errors,
        }
    }

    fn has(&self, key: &str) -> bool {
        self.obj.contains_key(key)
    }

    fn err(&mut self, key: &str, msg: &str) {
        let path = key_path(&self.prefix, key);
        add_err(self.errors, &path, msg);
    }

    fn str(&mut self, key: &str) -> Option<String> {
        match self.obj.get(key) {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Number(n)) => Some(n.to_string()),
            Some(_) => {
                self.err(key, NOT_STRING);
                None
            }
        }
    }

    fn req_str(&mut self, key: &str) -> Option<String> {
        let v = self.str(key).filter(|s| !s.trim().is_empty());
        if v.is_none() {
            self.err(key, BLANK);
        }
        v
    }

    fn choice(&mut self, key: &str, allowed: &[&str], required: bool) -> Option<String> {
        let v = if required {
            self.req_str(key)
        } else {
            self.str(key)
        };
        match v {
            Some(s) if allowed.contains(&s.as_str()) => Some(s),
            Some(_) => {
                self.err(key, CHOICE);
                None
            }
            None => None,
        }
    }

    fn u64(&mut self, key: &str) -> Option<u64> {
        match self.obj.get(key) {
            None | Some(Value::Null) => None,
            Some(v) => match as_u64(v) {
                Some(n) => Some(n),
                None => {
                    self.err(key, NOT_INT);
                    None
                }
            },
        }
    }

    fn bool(&mut self, key: &str) -> Option<bool> {
        match self.obj.get(key) {
            None | Some(Value::Null) => None,
            Some(Value::Bool(b)) => Some(*b),
            Some(v) if v == &json!(1) || v == &json!("1") || v == &json!("true") => Some(true),
            Some(v) if v == &json!(0) || v == &json!("0") || v == &json!("false") => Some(false),
            Some(_) => {
                self.err(key, NOT_BOOL);
                None
            }
        }
    }

    fn datetime(&mut self, key: &str, format: &str) -> Option<String> {
        let s = self.str(key)?;
        if chrono::NaiveDateTime::parse_from_str(&s, format).is_ok() {
            Some(s)
        } else {
            self.err(key, NOT_DATETIME);
            None
        }
    }

    fn object(&mut self, key: &str) -> Option<&'a Map<String, Value>> {
        match self.obj.get(key) {
            None | Some(Value::Null) => None,
            Some(Value::Object(m)) => Some(m),
            Some(_) => {
                self.err(key, "This value should be of type object.");
                None
            }
        }
    }

    fn array(&mut self, key: &str) -> Option<&'a Vec<Value>> {
        match self.obj.get(key) {
            None | Some(Value::Null) => None,
            Some(Value::Array(a)) => Some(a),
            Some(_) => {
                self.err(key, NOT_ARRAY);
                None
            }
        }
    }

    /// The fields not in `known`, for an entity's `extra`.
    fn rest(&self, known: &[&str]) -> Map<String, Value> {
        self.obj
            .iter()
            .filter(|(k, _)| !known.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

fn as_u64(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn as_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn now_datetime() -> String {
    chrono::Local::now().format("%Y-%m-%d %H:%M:%S").to_string()
}

/// The digits of a phone number that identify it: the last ten (so `+7 900 …` and `8 900 …`
/// meet), or all of them when shorter.
fn phone_key(phone: &str) -> Option<String> {
    let digits: String = phone.chars().filter(char::is_ascii_digit).collect();
    if digits.is_empty() {
        return None;
    }
    let skip = digits.len().saturating_sub(10);
    Some(digits[skip..].to_string())
}

/// Whether a search string is a phone number rather than a name.
fn looks_like_phone(s: &str) -> bool {
    let digits = s.chars().filter(char::is_ascii_digit).count();
    digits >= 5 && s.chars().all(|c| c.is_ascii_digit() || " +-()".contains(c))
}

fn contains_ci(haystack: &str, needle_lower: &str) -> bool {
    haystack.to_lowercase().contains(needle_lower)
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

// ---------------------------------------------------------------------------------------------
// The account's data
// ---------------------------------------------------------------------------------------------

struct Db {
    users: Vec<SimUser>,
    user_pos: HashMap<u64, usize>,
    user_status: HashMap<u64, String>,
    /// Extension code → user id: profile codes, overlaid by the modules' `additionalCodes`.
    codes: HashMap<String, u64>,
    user_codes: HashMap<u64, Vec<String>>,
    /// (code, module) in order of first registration.
    modules: Vec<(String, Value)>,
    call_events: Vec<CallEvent>,
    calls: Vec<UploadedCall>,
    call_external_ids: HashSet<String>,
    customers: Vec<Customer>,
    customer_by_ext: HashMap<String, u64>,
    customers_by_phone: HashMap<String, Vec<u64>>,
    orders: Vec<Order>,
    order_by_ext: HashMap<String, u64>,
    order_by_number: HashMap<String, u64>,
    orders_by_customer: HashMap<u64, Vec<u64>>,
    tasks: Vec<Task>,
}

fn by_seq<T>(items: &[T], id: u64) -> Option<&T> {
    let index = usize::try_from(id.checked_sub(1)?).ok()?;
    items.get(index)
}

fn by_seq_mut<T>(items: &mut [T], id: u64) -> Option<&mut T> {
    let index = usize::try_from(id.checked_sub(1)?).ok()?;
    items.get_mut(index)
}

fn next_id(len: usize) -> u64 {
    u64::try_from(len).unwrap_or(u64::MAX - 1) + 1
}

impl Db {
    fn new(users: Vec<SimUser>) -> Db {
        let user_pos = users.iter().enumerate().map(|(i, u)| (u.id, i)).collect();
        let mut db = Db {
            users,
            user_pos,
            user_status: HashMap::new(),
            codes: HashMap::new(),
            user_codes: HashMap::new(),
            modules: Vec::new(),
            call_events: Vec::new(),
            calls: Vec::new(),
            call_external_ids: HashSet::new(),
            customers: Vec::new(),
            customer_by_ext: HashMap::new(),
            customers_by_phone: HashMap::new(),
            orders: Vec::new(),
            order_by_ext: HashMap::new(),
            order_by_number: HashMap::new(),
            orders_by_customer: HashMap::new(),
            tasks: Vec::new(),
        };
        db.recompute_codes();
        db
    }

    fn user(&self, id: u64) -> Option<&SimUser> {
        self.user_pos.get(&id).and_then(|&i| self.users.get(i))
    }

    fn recompute_codes(&mut self) {
        self.codes.clear();
        for u in &self.users {
            if let Some(code) = &u.code {
                self.codes.insert(code.clone(), u.id);
            }
        }
        for (_, module) in &self.modules {
            let list = module.pointer("/integrations/telephony/additionalCodes");
            for entry in list.and_then(Value::as_array).into_iter().flatten() {
                let code = entry.get("code").and_then(as_string);
                let user = entry.get("userId").and_then(as_u64);
                if let (Some(code), Some(user)) = (code, user) {
                    self.codes.insert(code, user);
                }
            }
        }
        self.user_codes.clear();
        for (code, user) in &self.codes {
            self.user_codes.entry(*user).or_default().push(code.clone());
        }
        for codes in self.user_codes.values_mut() {
            codes.sort();
        }
    }

    fn user_json(&self, u: &SimUser) -> Value {
        let status = self
            .user_status
            .get(&u.id)
            .map(String::as_str)
            .unwrap_or("free");
        json!({
            "id": u.id,
            "createdAt": "2024-01-01 09:00:00",
            "active": u.active,
            "email": format!("user{}@example.com", u.id),
            "firstName": u.first_name,
            "lastName": u.last_name,
            "status": status,
            "online": u.active,
            "isAdmin": false,
            "isManager": u.is_manager,
            "groups": [],
        })
    }

    // -- customers --

    fn customer(&self, id: u64) -> Option<&Customer> {
        by_seq(&self.customers, id)
    }

    fn find_customer(&self, key: &str, by_id: bool) -> Option<&Customer> {
        let id = if by_id {
            key.parse().ok()?
        } else {
            *self.customer_by_ext.get(key)?
        };
        self.customer(id)
    }

    /// Customers whose phone matches, newest first.
    fn customers_by_phone(&self, phone: &str) -> Vec<u64> {
        let mut ids = phone_key(phone)
            .and_then(|k| self.customers_by_phone.get(&k))
            .cloned()
            .unwrap_or_default();
        ids.sort_unstable_by(|a, b| b.cmp(a));
        ids.dedup();
        ids
    }

    fn customer_json(&self, c: &Customer) -> Value {
        let mut v = serde_json::to_value(c).unwrap_or(Value::Null);
        if let Value::Object(m) = &mut v {
            m.insert("type".into(), json!("customer"));
        }
        v
    }

    /// A customer reference `{id}` or `{externalId}` in an order or a task.
    fn resolve_customer_ref(&self, f: &mut Fields, key: &str) -> Option<EntityRef> {
        let obj = f.object(key)?;
        let found = if let Some(id) = obj.get("id").and_then(as_u64) {
            self.customer(id)
        } else if let Some(ext) = obj.get("externalId").and_then(as_string) {
            self.find_customer(&ext, false)
        } else {
            None
        };
        match found {
            Some(c) => Some(EntityRef {
                id: c.id,
                external_id: c.external_id.clone(),
            }),
            None => {
                f.err(key, "Customer not found.");
                None
            }
        }
    }

    /// Applies a customer JSON onto `c` (a new or an existing customer), collecting errors.
    fn apply_customer(&self, c: &mut Customer, obj: &Map<String, Value>, errors: &mut Errors) {
        let mut f = Fields::new(obj, "", errors);
        if f.has("externalId") {
            let ext = f.str("externalId");
            if let Some(ext) = &ext {
                let taken = self.customer_by_ext.get(ext).is_some_and(|&id| id != c.id);
                if taken {
                    f.err(
                        "externalId",
                        &format!("Customer with externalId={ext} already exists."),
                    );
                }
            }
            c.external_id = ext;
        }
        for (key, slot) in [
            ("firstName", &mut c.first_name),
            ("lastName", &mut c.last_name),
            ("patronymic", &mut c.patronymic),
        ] {
            if f.has(key) {
                *slot = f.str(key);
            }
        }
        if f.has("email") {
            let email = f.str("email").filter(|e| !e.is_empty());
            if email.as_deref().is_some_and(|e| !e.contains('@')) {
                f.err("email", "This value is not a valid email address.");
            }
            c.email = email;
        }
        if f.has("phones") {
            let mut phones = Vec::new();
            for (i, p) in f.array("phones").into_iter().flatten().enumerate() {
                match p.get("number").and_then(as_string) {
                    Some(number) => phones.push(Phone { number }),
                    None => f.err(&format!("phones[{i}][number]"), BLANK),
                }
            }
            c.phones = phones;
        }
        if f.has("managerId") {
            let manager = f.u64("managerId");
            if manager.is_some_and(|m| self.user(m).is_none()) {
                f.err("managerId", "User not found.");
            }
            c.manager_id = manager;
        }
        let known = [
            "id",
            "type",
            "externalId",
            "firstName",
            "lastName",
            "patronymic",
            "email",
            "phones",
            "managerId",
            "site",
            "createdAt",
        ];
        c.extra.extend(f.rest(&known));
    }

    fn index_customer(&mut self, c: &Customer) {
        if let Some(ext) = &c.external_id {
            self.customer_by_ext.insert(ext.clone(), c.id);
        }
        for p in &c.phones {
            if let Some(k) = phone_key(&p.number) {
                self.customers_by_phone.entry(k).or_default().push(c.id);
            }
        }
    }

    fn unindex_customer(&mut self, c: &Customer) {
        if let Some(ext) = &c.external_id {
            self.customer_by_ext.remove(ext);
        }
        for p in &c.phones {
            if let Some(ids) =
                phone_key(&p.number).and_then(|k| self.customers_by_phone.get_mut(&k))
            {
                ids.retain(|&id| id != c.id);
            }
        }
    }

    fn create_customer(
        &mut self,
        obj: &Map<String, Value>,
        site: Option<&str>,
    ) -> Result<u64, SimError> {
        let mut c = Customer {
            id: next_id(self.customers.len()),
            external_id: None,
            first_name: None,
            last_name: None,
            patronymic: None,
            email: None,
            phones: Vec::new(),
            manager_id: None,
            site: site.unwrap_or(DEFAULT_SITE).to_string(),
            created_at: now_datetime(),
            extra: Map::new(),
        };
        let mut errors = Errors::new();
        self.apply_customer(&mut c, obj, &mut errors);
        if !errors.is_empty() {
            return Err(SimError::entity(errors));
        }
        self.index_customer(&c);
        let id = c.id;
        self.customers.push(c);
        Ok(id)
    }

    fn edit_customer(
        &mut self,
        key: &str,
        by_id: bool,
        obj: &Map<String, Value>,
    ) -> Result<u64, SimError> {
        let old = self
            .find_customer(key, by_id)
            .ok_or_else(SimError::not_found)?
            .clone();
        let mut c = old.clone();
        let mut errors = Errors::new();
        self.apply_customer(&mut c, obj, &mut errors);
        if !errors.is_empty() {
            return Err(SimError::entity(errors));
        }
        self.unindex_customer(&old);
        self.index_customer(&c);
        let id = c.id;
        if let Some(slot) = by_seq_mut(&mut self.customers, id) {
            *slot = c;
        }
        Ok(id)
    }

    fn customer_matches_text(&self, c: &Customer, needle: &str) -> bool {
        if looks_like_phone(needle) {
            let key = phone_key(needle);
            return c.phones.iter().any(|p| phone_key(&p.number) == key);
        }
        let needle = needle.to_lowercase();
        let name = [&c.last_name, &c.first_name, &c.patronymic]
            .into_iter()
            .flatten()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join(" ");
        contains_ci(&name, &needle)
            || c.email.as_deref().is_some_and(|e| contains_ci(e, &needle))
            || c.external_id.as_deref() == Some(needle.as_str())
    }

    // -- orders --

    fn order(&self, id: u64) -> Option<&Order> {
        by_seq(&self.orders, id)
    }

    fn find_order(&self, key: &str, by_id: bool) -> Option<&Order> {
        let id = if by_id {
            key.parse().ok()?
        } else {
            *self.order_by_ext.get(key)?
        };
        self.order(id)
    }

    fn order_json(&self, o: &Order) -> Value {
        let mut v = serde_json::to_value(o).unwrap_or(Value::Null);
        if let (Value::Object(m), Some(r)) = (&mut v, &o.customer) {
            if let Some(c) = self.customer(r.id) {
                m.insert("customer".into(), self.customer_json(c));
            }
        }
        v
    }

    fn apply_order(&self, o: &mut Order, obj: &Map<String, Value>, errors: &mut Errors) {
        let mut f = Fields::new(obj, "", errors);
        if f.has("externalId") {
            let ext = f.str("externalId");
            if let Some(ext) = &ext {
                if self.order_by_ext.get(ext).is_some_and(|&id| id != o.id) {
                    f.err(
                        "externalId",
                        &format!("Order with externalId={ext} already exists."),
                    );
                }
            }
            o.external_id = ext;
        }
        if let Some(number) = f.str("number") {
            if self
                .order_by_number
                .get(&number)
                .is_some_and(|&id| id != o.id)
            {
                f.err(
                    "number",
                    &format!("Order with number={number} already exists."),
                );
            }
            o.number = number;
        }
        if f.has("status") {
            match f.str("status") {
                Some(s) if status_group(&s).is_some() => o.status = s,
                _ => f.err("status", CHOICE),
            }
        }
        if f.has("orderMethod") {
            let method = f.str("orderMethod");
            if method
                .as_deref()
                .is_some_and(|m| !ORDER_METHODS.iter().any(|(c, _)| *c == m))
            {
                f.err("orderMethod", CHOICE);
            }
            o.order_method = method;
        }
        if f.has("managerId") {
            let manager = f.u64("managerId");
            if manager.is_some_and(|m| self.user(m).is_none()) {
                f.err("managerId", "User not found.");
            }
            o.manager_id = manager;
        }
        for (key, slot) in [
            ("firstName", &mut o.first_name),
            ("lastName", &mut o.last_name),
            ("patronymic", &mut o.patronymic),
            ("phone", &mut o.phone),
            ("email", &mut o.email),
        ] {
            if f.has(key) {
                *slot = f.str(key);
            }
        }
        if f.has("customer") {
            o.customer = self.resolve_customer_ref(&mut f, "customer");
        }
        let known = [
            "id",
            "number",
            "externalId",
            "status",
            "site",
            "createdAt",
            "orderMethod",
            "managerId",
            "firstName",
            "lastName",
            "patronymic",
            "phone",
            "email",
            "customer",
        ];
        o.extra.extend(f.rest(&known));
    }

    fn create_order(
        &mut self,
        obj: &Map<String, Value>,
        site: Option<&str>,
    ) -> Result<u64, SimError> {
        let id = next_id(self.orders.len());
        let mut o = Order {
            id,
            number: format!("{id}A"),
            external_id: None,
            status: "new".to_string(),
            site: site.unwrap_or(DEFAULT_SITE).to_string(),
            created_at: now_datetime(),
            order_method: None,
            manager_id: None,
            first_name: None,
            last_name: None,
            patronymic: None,
            phone: None,
            email: None,
            customer: None,
            extra: Map::new(),
        };
        let mut errors = Errors::new();
        self.apply_order(&mut o, obj, &mut errors);
        if !errors.is_empty() {
            return Err(SimError::entity(errors));
        }
        if o.customer.is_none() {
            // Like the real CRM, an order without a customer gets one from its contact data.
            let mut contact = Map::new();
            for (key, value) in [
                ("firstName", &o.first_name),
                ("lastName", &o.last_name),
                ("patronymic", &o.patronymic),
                ("email", &o.email),
            ] {
                if let Some(v) = value {
                    contact.insert(key.into(), json!(v));
                }
            }
            if let Some(phone) = &o.phone {
                contact.insert("phones".into(), json!([{ "number": phone }]));
            }
            if let Some(m) = o.manager_id {
                contact.insert("managerId".into(), json!(m));
            }
            let customer_id = self.create_customer(&contact, Some(&o.site))?;
            o.customer = Some(EntityRef {
                id: customer_id,
                external_id: None,
            });
        }
        self.index_order(&o);
        self.orders.push(o);
        Ok(id)
    }

    fn index_order(&mut self, o: &Order) {
        if let Some(ext) = &o.external_id {
            self.order_by_ext.insert(ext.clone(), o.id);
        }
        self.order_by_number.insert(o.number.clone(), o.id);
        if let Some(c) = &o.customer {
            self.orders_by_customer.entry(c.id).or_default().push(o.id);
        }
    }

    fn unindex_order(&mut self, o: &Order) {
        if let Some(ext) = &o.external_id {
            self.order_by_ext.remove(ext);
        }
        self.order_by_number.remove(&o.number);
        if let Some(ids) = o
            .customer
            .as_ref()
            .and_then(|c| self.orders_by_customer.get_mut(&c.id))
        {
            ids.retain(|&id| id != o.id);
        }
    }

    fn edit_order(
        &mut self,
        key: &str,
        by_id: bool,
        obj: &Map<String, Value>,
    ) -> Result<u64, SimError> {
        let old = self
            .find_order(key, by_id)
            .ok_or_else(SimError::not_found)?
            .clone();
        let mut o = old.clone();
        let mut errors = Errors::new();
        self.apply_order(&mut o, obj, &mut errors);
        if !errors.is_empty() {
            return Err(SimError::entity(errors));
        }
        self.unindex_order(&old);
        self.index_order(&o);
        let id = o.id;
        if let Some(slot) = by_seq_mut(&mut self.orders, id) {
            *slot = o;
        }
        Ok(id)
    }

    // -- tasks --

    fn apply_task(&self, t: &mut Task, obj: &Map<String, Value>, errors: &mut Errors) {
        let mut f = Fields::new(obj, "", errors);
        if f.has("text") || t.text.is_empty() {
            if let Some(text) = f.req_str("text") {
                t.text = text;
            }
        }
        if f.has("performerId") || t.performer == 0 {
            match f.u64("performerId") {
                Some(p) if self.user(p).is_some() => {
                    t.performer = p;
                    t.performer_id = p;
                }
                Some(_) => f.err("performerId", "User not found."),
                None => f.err("performerId", BLANK),
            }
        }
        if f.has("commentary") {
            t.commentary = f.str("commentary");
        }
        if f.has("datetime") {
            t.datetime = f.datetime("datetime", "%Y-%m-%d %H:%M");
        }
        if let Some(complete) = f.bool("complete") {
            if complete && !t.complete {
                t.completed_at = Some(now_datetime());
            }
            if !complete {
                t.completed_at = None;
            }
            t.complete = complete;
        }
        if f.has("customer") {
            t.customer = self.resolve_customer_ref(&mut f, "customer");
        }
        if f.has("order") {
            t.order = self.resolve_order_ref(&mut f, "order");
        }
        if f.has("phone") {
            t.phone = f.str("phone");
        }
        if f.has("phoneSite") {
            t.phone_site = f.str("phoneSite");
        }
    }

    fn resolve_order_ref(&self, f: &mut Fields, key: &str) -> Option<OrderRef> {
        let obj = f.object(key)?;
        let found = if let Some(id) = obj.get("id").and_then(as_u64) {
            self.order(id)
        } else if let Some(n) = obj.get("number").and_then(as_string) {
            self.order_by_number.get(&n).and_then(|&id| self.order(id))
        } else if let Some(ext) = obj.get("externalId").and_then(as_string) {
            self.find_order(&ext, false)
        } else {
            None
        };
        match found {
            Some(o) => Some(OrderRef {
                id: o.id,
                number: o.number.clone(),
                external_id: o.external_id.clone(),
            }),
            None => {
                f.err(key, "Order not found.");
                None
            }
        }
    }

    fn create_task(&mut self, obj: &Map<String, Value>) -> Result<u64, SimError> {
        let mut t = Task {
            id: next_id(self.tasks.len()),
            text: String::new(),
            commentary: None,
            datetime: None,
            created_at: now_datetime(),
            complete: false,
            completed_at: None,
            creator: None,
            performer: 0,
            performer_id: 0,
            performer_type: "user".to_string(),
            customer: None,
            order: None,
            phone: None,
            phone_site: None,
        };
        let mut errors = Errors::new();
        self.apply_task(&mut t, obj, &mut errors);
        if !errors.is_empty() {
            return Err(SimError::entity(errors));
        }
        let id = t.id;
        self.tasks.push(t);
        Ok(id)
    }

    fn task_matches_customer(&self, t: &Task, needle: &str) -> bool {
        let Some(r) = &t.customer else { return false };
        if r.id.to_string() == needle || r.external_id.as_deref() == Some(needle) {
            return true;
        }
        self.customer(r.id)
            .is_some_and(|c| self.customer_matches_text(c, needle))
    }
}

// ---------------------------------------------------------------------------------------------
// Telephony
// ---------------------------------------------------------------------------------------------

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
    fn db(&self) -> MutexGuard<'_, Db> {
        lock(&self.db)
    }

    fn observe(&self, what: Observed) {
        if let Some(tx) = lock(&self.observer).as_ref() {
            let _ = tx.send(what);
        }
    }

    fn call_event(&self, p: &Params) -> ApiResult {
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

    fn calls_upload(&self, p: &Params) -> ApiResult {
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

    fn telephony_manager(&self, p: &Params) -> ApiResult {
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

    // -------------------------------------------------------------------------------------
    // Users
    // -------------------------------------------------------------------------------------

    fn users(&self, p: &Params) -> ApiResult {
        let page = Page::from(p)?;
        let active = p.filter_bool("active")?;
        let is_manager = p.filter_bool("isManager")?;
        let is_admin = p.filter_bool("isAdmin")?;
        let online = p.filter_bool("online")?;
        let email = p.filter("email");
        let status = p.filter("status");
        let db = self.db();
        let ids: Vec<u64> = db
            .users
            .iter()
            .filter(|u| active.is_none_or(|a| u.active == a))
            .filter(|u| is_manager.is_none_or(|m| u.is_manager == m))
            .filter(|_| is_admin.is_none_or(|a| !a))
            .filter(|u| online.is_none_or(|o| u.active == o))
            .filter(|u| email.is_none_or(|e| format!("user{}@example.com", u.id) == e))
            .filter(|u| {
                status.is_none_or(|s| db.user_status.get(&u.id).map_or("free", String::as_str) == s)
            })
            .map(|u| u.id)
            .collect();
        let (page_ids, pagination) = page.slice(&ids);
        let users: Vec<Value> = page_ids
            .iter()
            .filter_map(|&id| db.user(id))
            .map(|u| db.user_json(u))
            .collect();
        Ok(ok(
            json!({"success": true, "pagination": pagination, "users": users}),
        ))
    }

    fn user(&self, id: u64) -> ApiResult {
        let db = self.db();
        let user = db.user(id).ok_or_else(SimError::not_found)?;
        Ok(ok(json!({"success": true, "user": db.user_json(user)})))
    }

    fn user_status(&self, id: u64, p: &Params) -> ApiResult {
        let status = p
            .get("status")
            .ok_or_else(|| SimError::missing_param("status"))?;
        if !["free", "busy", "dinner", "break"].contains(&status) {
            return Err(SimError::entity1("status", CHOICE));
        }
        let mut db = self.db();
        if db.user(id).is_none() {
            return Err(SimError::not_found());
        }
        db.user_status.insert(id, status.to_string());
        Ok(ok(json!({"success": true})))
    }

    // -------------------------------------------------------------------------------------
    // Customers
    // -------------------------------------------------------------------------------------

    fn customers(&self, p: &Params) -> ApiResult {
        let page = Page::from(p)?;
        let db = self.db();
        let ids = p.filter_list("ids");
        let ext_ids = p.filter_list("externalIds");
        let managers = p.filter_list("managers");
        let sites = p.filter_list("sites");
        let name = p.filter("name");
        let email = p.filter("email").map(str::to_lowercase);
        // The phone index answers the hot lookup (`filter[name]=<phone>`) without a scan.
        let candidates: Vec<u64> = match name {
            Some(n) if looks_like_phone(n) => db.customers_by_phone(n),
            _ => db.customers.iter().rev().map(|c| c.id).collect(),
        };
        let matching: Vec<u64> = candidates
            .into_iter()
            .filter_map(|id| db.customer(id))
            .filter(|c| ids.is_empty() || ids.contains(&c.id.to_string().as_str()))
            .filter(|c| {
                ext_ids.is_empty()
                    || c.external_id
                        .as_deref()
                        .is_some_and(|e| ext_ids.contains(&e))
            })
            .filter(|c| {
                managers.is_empty()
                    || c.manager_id
                        .is_some_and(|m| managers.contains(&m.to_string().as_str()))
            })
            .filter(|c| sites.is_empty() || sites.contains(&c.site.as_str()))
            .filter(|c| name.is_none_or(|n| db.customer_matches_text(c, n)))
            .filter(|c| {
                email
                    .as_deref()
                    .is_none_or(|e| c.email.as_deref().is_some_and(|ce| contains_ci(ce, e)))
            })
            .map(|c| c.id)
            .collect();
        let (page_ids, pagination) = page.slice(&matching);
        let customers: Vec<Value> = page_ids
            .iter()
            .filter_map(|&id| db.customer(id))
            .map(|c| db.customer_json(c))
            .collect();
        Ok(ok(
            json!({"success": true, "pagination": pagination, "customers": customers}),
        ))
    }

    fn customer_create(&self, p: &Params) -> ApiResult {
        let obj = p.json_object("customer")?;
        let id = self.db().create_customer(&obj, p.get("site"))?;
        Ok(created(json!({"success": true, "id": id})))
    }

    fn customer(&self, key: &str, p: &Params) -> ApiResult {
        let by_id = p.by_id()?;
        let db = self.db();
        let c = db
            .find_customer(key, by_id)
            .ok_or_else(SimError::not_found)?;
        Ok(ok(
            json!({"success": true, "customer": db.customer_json(c)}),
        ))
    }

    fn customer_edit(&self, key: &str, p: &Params) -> ApiResult {
        let by_id = p.by_id()?;
        let obj = p.json_object("customer")?;
        let id = self.db().edit_customer(key, by_id, &obj)?;
        Ok(ok(json!({"success": true, "id": id})))
    }

    // -------------------------------------------------------------------------------------
    // Orders
    // -------------------------------------------------------------------------------------

    fn orders(&self, p: &Params) -> ApiResult {
        let page = Page::from(p)?;
        let db = self.db();
        let ids = p.filter_list("ids");
        let ext_ids = p.filter_list("externalIds");
        let numbers = p.filter_list("numbers");
        let managers = p.filter_list("managers");
        let sites = p.filter_list("sites");
        let statuses = p.filter_list("extendedStatus");
        let customer_text = p.filter("customer");
        let mut customer_id = match p.filter("customerId") {
            Some(s) => Some(
                s.parse::<u64>()
                    .map_err(|_| SimError::input("filter[customerId]", NOT_INT))?,
            ),
            None => None,
        };
        if let Some(ext) = p.filter("customerExternalId") {
            let id = db.customer_by_ext.get(ext).copied().unwrap_or(0);
            if customer_id.is_some_and(|c| c != id) {
                customer_id = Some(0);
            } else {
                customer_id = Some(id);
            }
        }
        // The per-customer index answers the hot lookup without a scan.
        let candidates: Vec<u64> = match customer_id {
            Some(c) => {
                let mut v = db.orders_by_customer.get(&c).cloned().unwrap_or_default();
                v.sort_unstable_by(|a, b| b.cmp(a));
                v
            }
            None => db.orders.iter().rev().map(|o| o.id).collect(),
        };
        let matching: Vec<u64> = candidates
            .into_iter()
            .filter_map(|id| db.order(id))
            .filter(|o| ids.is_empty() || ids.contains(&o.id.to_string().as_str()))
            .filter(|o| {
                ext_ids.is_empty()
                    || o.external_id
                        .as_deref()
                        .is_some_and(|e| ext_ids.contains(&e))
            })
            .filter(|o| numbers.is_empty() || numbers.contains(&o.number.as_str()))
            .filter(|o| {
                managers.is_empty()
                    || o.manager_id
                        .is_some_and(|m| managers.contains(&m.to_string().as_str()))
            })
            .filter(|o| sites.is_empty() || sites.contains(&o.site.as_str()))
            .filter(|o| statuses.is_empty() || statuses.contains(&o.status.as_str()))
            .filter(|o| {
                customer_text.is_none_or(|t| {
                    let by_customer = o.customer.as_ref().and_then(|r| db.customer(r.id));
                    by_customer.is_some_and(|c| db.customer_matches_text(c, t))
                        || (looks_like_phone(t)
                            && o.phone.as_deref().and_then(phone_key) == phone_key(t))
                })
            })
            .map(|o| o.id)
            .collect();
        let (page_ids, pagination) = page.slice(&matching);
        let orders: Vec<Value> = page_ids
            .iter()
            .filter_map(|&id| db.order(id))
            .map(|o| db.order_json(o))
            .collect();
        Ok(ok(
            json!({"success": true, "pagination": pagination, "orders": orders}),
        ))
    }

    fn order_create(&self, p: &Params) -> ApiResult {
        let obj = p.json_object("order")?;
        let mut db = self.db();
        let id = db.create_order(&obj, p.get("site"))?;
        let order = db
            .order(id)
            .map(|o| db.order_json(o))
            .unwrap_or(Value::Null);
        Ok(created(json!({"success": true, "id": id, "order": order})))
    }

    fn order(&self, key: &str, p: &Params) -> ApiResult {
        let by_id = p.by_id()?;
        let db = self.db();
        let o = db.find_order(key, by_id).ok_or_else(SimError::not_found)?;
        Ok(ok(json!({"success": true, "order": db.order_json(o)})))
    }

    fn order_edit(&self, key: &str, p: &Params) -> ApiResult {
        let by_id = p.by_id()?;
        let obj = p.json_object("order")?;
        let mut db = self.db();
        let id = db.edit_order(key, by_id, &obj)?;
        let order = db
            .order(id)
            .map(|o| db.order_json(o))
            .unwrap_or(Value::Null);
        Ok(ok(json!({"success": true, "id": id, "order": order})))
    }

    // -------------------------------------------------------------------------------------
    // Tasks
    // -------------------------------------------------------------------------------------

    fn tasks(&self, p: &Params) -> ApiResult {
        let page = Page::from(p)?;
        let ids = p.filter_list("ids");
        let performers = p.filter_list("performers");
        let creators = p.filter_list("creators");
        let complete = match p.filter("status") {
            None => None,
            Some("performing") => Some(false),
            Some("completed") => Some(true),
            Some(_) => return Err(SimError::input("filter[status]", CHOICE)),
        };
        let text = p.filter("text").map(str::to_lowercase);
        let customer = p.filter("customer");
        let order_number = p.filter("orderNumber");
        let db = self.db();
        let matching: Vec<u64> = db
            .tasks
            .iter()
            .rev()
            .filter(|t| ids.is_empty() || ids.contains(&t.id.to_string().as_str()))
            .filter(|t| {
                performers.is_empty() || performers.contains(&t.performer.to_string().as_str())
            })
            .filter(|t| {
                creators.is_empty()
                    || t.creator
                        .is_some_and(|c| creators.contains(&c.to_string().as_str()))
            })
            .filter(|t| complete.is_none_or(|c| t.complete == c))
            .filter(|t| {
                text.as_deref().is_none_or(|x| {
                    contains_ci(&t.text, x)
                        || t.commentary.as_deref().is_some_and(|c| contains_ci(c, x))
                })
            })
            .filter(|t| customer.is_none_or(|c| db.task_matches_customer(t, c)))
            .filter(|t| {
                order_number.is_none_or(|n| t.order.as_ref().is_some_and(|o| o.number == n))
            })
            .map(|t| t.id)
            .collect();
        let (page_ids, pagination) = page.slice(&matching);
        let tasks: Vec<Value> = page_ids
            .iter()
            .filter_map(|&id| by_seq(&db.tasks, id))
            .map(|t| serde_json::to_value(t).unwrap_or(Value::Null))
            .collect();
        Ok(ok(
            json!({"success": true, "pagination": pagination, "tasks": tasks}),
        ))
    }

    fn task_create(&self, p: &Params) -> ApiResult {
        let obj = p.json_object("task")?;
        let id = self.db().create_task(&obj)?;
        Ok(created(json!({"success": true, "id": id})))
    }

    fn task(&self, id: u64) -> ApiResult {
        let db = self.db();
        let t = by_seq(&db.tasks, id).ok_or_else(SimError::not_found)?;
        Ok(ok(json!({"success": true, "task": t})))
    }

    fn task_edit(&self, id: u64, p: &Params) -> ApiResult {
        let obj = p.json_object("task")?;
        let mut db = self.db();
        let mut t = by_seq(&db.tasks, id)
            .ok_or_else(SimError::not_found)?
            .clone();
        let mut errors = Errors::new();
        db.apply_task(&mut t, &obj, &mut errors);
        if !errors.is_empty() {
            return Err(SimError::entity(errors));
        }
        if let Some(slot) = by_seq_mut(&mut db.tasks, id) {
            *slot = t;
        }
        Ok(ok(json!({"success": true})))
    }

    // -------------------------------------------------------------------------------------
    // Integration modules
    // -------------------------------------------------------------------------------------

    fn module(&self, code: &str) -> ApiResult {
        let db = self.db();
        let (_, module) = db
            .modules
            .iter()
            .find(|(c, _)| c == code)
            .ok_or_else(SimError::not_found)?;
        Ok(ok(json!({"success": true, "integrationModule": module})))
    }

    fn module_edit(&self, code: &str, p: &Params) -> ApiResult {
        let mut module = p.json_object("integrationModule")?;
        let mut errors = Errors::new();
        let mut f = Fields::new(&module, "", &mut errors);
        f.req_str("baseUrl");
        if let Some(logo) = f.str("logo") {
            let logo = logo.to_lowercase();
            if !(logo.ends_with(".svg") || logo.contains("image/svg") || logo.contains("<svg")) {
                f.err("logo", "Logo image must be svg");
            }
        }
        if let Some(body_code) = f.str("code") {
            if body_code != code {
                f.err("code", "The code must match the code in the URL.");
            }
        }
        let telephony = f
            .object("integrations")
            .and_then(|i| i.get("telephony"))
            .and_then(Value::as_object);
        let db = self.db();
        if let Some(list) = telephony.and_then(|t| t.get("additionalCodes")) {
            let prefix = "integrations[telephony][additionalCodes]";
            match list.as_array() {
                None => add_err(&mut errors, prefix, NOT_ARRAY),
                Some(items) => {
                    for (i, item) in items.iter().enumerate() {
                        let user = item.get("userId").and_then(as_u64);
                        if user.is_none_or(|u| db.user(u).is_none()) {
                            add_err(
                                &mut errors,
                                &format!("{prefix}[{i}][userId]"),
                                "User not found.",
                            );
                        }
                        if item
                            .get("code")
                            .and_then(as_string)
                            .is_none_or(|c| c.is_empty())
                        {
                            add_err(&mut errors, &format!("{prefix}[{i}][code]"), BLANK);
                        }
                    }
                }
            }
        }
        if !errors.is_empty() {
            return Err(SimError::entity(errors));
        }
        drop(db);
        module.insert("code".into(), json!(code));
        let module = Value::Object(module);
        let mut db = self.db();
        match db.modules.iter_mut().find(|(c, _)| c == code) {
            // Each edit replaces the module, `additionalCodes` included.
            Some((_, slot)) => *slot = module,
            None => db.modules.push((code.to_string(), module)),
        }
        db.recompute_codes();
        Ok(ok(json!({"success": true, "info": {}})))
    }
}

// ---------------------------------------------------------------------------------------------
// Reference books and account info (static)
// ---------------------------------------------------------------------------------------------

type StatusGroup = (
    &'static str,
    &'static str,
    bool,
    &'static [(&'static str, &'static str)],
);

/// (group code, name, process, statuses (code, name)) of a fresh account.
const STATUS_GROUPS: &[StatusGroup] = &[
    ("new", "New", false, &[("new", "New")]),
    (
        "approval",
        "Approval",
        true,
        &[
            ("availability-confirmed", "Availability confirmed"),
            ("offer-analog", "Offer an analog"),
            ("client-confirmed", "Confirmed by the client"),
            ("prepayed", "Prepaid"),
        ],
    ),
    (
        "assembling",
        "Assembling",
        true,
        &[
            ("send-to-assembling", "Sent to assembling"),
            ("assembling", "Assembling"),
            ("assembling-complete", "Assembled"),
        ],
    ),
    (
        "delivery",
        "Delivery",
        true,
        &[
            ("send-to-delivery", "Sent to delivery"),
            ("delivering", "Delivering"),
            ("redirect", "Redirected"),
        ],
    ),
    ("complete", "Complete", false, &[("complete", "Complete")]),
    (
        "cancel",
        "Cancel",
        false,
        &[
            ("no-call", "Could not reach the client"),
            ("no-product", "Out of stock"),
            ("already-buyed", "Bought elsewhere"),
            ("delivery-did-not-suit", "Delivery did not suit"),
            ("prices-did-not-suit", "Price did not suit"),
            ("cancel-other", "Cancelled, other reason"),
            ("return", "Returned"),
        ],
    ),
];

const ORDER_METHODS: &[(&str, &str)] = &[
    ("phone", "Phone call"),
    ("shopping-cart", "Shopping cart"),
    ("one-click", "One click"),
    ("landing-page", "Landing page"),
    ("offline", "Offline"),
    ("app", "Mobile app"),
    ("live-chat", "Live chat"),
    ("messenger", "Messenger"),
    ("missed-call", "Missed call"),
];

/// The group of a status code.
fn status_group(status: &str) -> Option<&'static str> {
    STATUS_GROUPS
        .iter()
        .find(|(_, _, _, statuses)| statuses.iter().any(|(c, _)| *c == status))
        .map(|(group, ..)| *group)
}

fn statuses_json() -> Value {
    let mut map = Map::new();
    let mut ordering = 0;
    for (group, _, _, statuses) in STATUS_GROUPS {
        for (code, name) in *statuses {
            ordering += 10;
            map.insert(
                (*code).into(),
                json!({"name": name, "code": code, "active": true, "ordering": ordering, "group": group}),
            );
        }
    }
    json!({"success": true, "statuses": map})
}

fn status_groups_json() -> Value {
    let mut map = Map::new();
    for (i, (code, name, process, statuses)) in STATUS_GROUPS.iter().enumerate() {
        let codes: Vec<&str> = statuses.iter().map(|(c, _)| *c).collect();
        map.insert(
            (*code).into(),
            json!({"name": name, "code": code, "active": true, "ordering": (i + 1) * 10,
                   "process": process, "statuses": codes}),
        );
    }
    json!({"success": true, "statusGroups": map})
}

fn order_methods_json() -> Value {
    let mut map = Map::new();
    for (code, name) in ORDER_METHODS {
        map.insert(
            (*code).into(),
            json!({"name": name, "code": code, "active": true,
                   "defaultForCrm": *code == "phone", "defaultForApi": *code == "phone"}),
        );
    }
    json!({"success": true, "orderMethods": map})
}

fn sites_json(base_url: &str) -> Value {
    json!({"success": true, "sites": {
        DEFAULT_SITE: {"name": "Demo store", "code": DEFAULT_SITE, "url": base_url,
                        "defaultForCrm": true, "currency": "RUB"}
    }})
}

fn credentials_json() -> Value {
    json!({
        "success": true,
        "scopes": ["customer_read", "customer_write", "order_read", "order_write", "task_read",
                   "task_write", "user_read", "user_write", "reference_read", "telephony_read",
                   "telephony_write", "integration_read", "integration_write"],
        "siteAccess": "access_full",
        "sitesAvailable": [DEFAULT_SITE],
    })
}

// ---------------------------------------------------------------------------------------------
// Tests: real HTTP against `start`
// ---------------------------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;

    struct T {
        sim: RetailCrmSim,
        http: reqwest::Client,
    }

    impl T {
        /// A simulator without rate limiting, so tests do not trip over it.
        async fn new() -> T {
            T::with(SimOptions {
                rate_limit: None,
                ..SimOptions::default()
            })
            .await
        }

        async fn with(opts: SimOptions) -> T {
            let sim = RetailCrmSim::start(opts).await.expect("start");
            T {
                sim,
                http: reqwest::Client::new(),
            }
        }

        fn url(&self, path: &str) -> String {
            format!("{}/api/v5{path}", self.sim.base_url())
        }

        async fn answer(r: reqwest::Response) -> (u16, Value) {
            let status = r.status().as_u16();
            let text = r.text().await.expect("body");
            (
                status,
                serde_json::from_str(&text).unwrap_or(Value::String(text)),
            )
        }

        async fn get(&self, path: &str) -> (u16, Value) {
            let r = self
                .http
                .get(self.url(path))
                .header("X-API-KEY", DEFAULT_API_KEY);
            T::answer(r.send().await.expect("send")).await
        }

        async fn post(&self, path: &str, form: &[(&str, &str)]) -> (u16, Value) {
            let r = self
                .http
                .post(self.url(path))
                .header("X-API-KEY", DEFAULT_API_KEY)
                .form(form);
            T::answer(r.send().await.expect("send")).await
        }

        async fn post_json(&self, path: &str, field: &str, v: Value) -> (u16, Value) {
            self.post(path, &[(field, &v.to_string())]).await
        }
    }

    // -- transport --

    #[tokio::test]
    async fn missing_and_wrong_keys_are_refused_and_the_key_may_be_a_parameter() {
        let t = T::new().await;
        let r = t.http.get(t.url("/users")).send().await.expect("send");
        let (status, body) = T::answer(r).await;
        assert_eq!(status, 403);
        assert_eq!(
            body,
            json!({"success": false, "errorMsg": "\"apiKey\" is missing."})
        );

        let r = t
            .http
            .get(t.url("/users"))
            .header("X-API-KEY", "nope")
            .send()
            .await
            .expect("send");
        let (status, body) = T::answer(r).await;
        assert_eq!(status, 403);
        assert_eq!(body["errorMsg"], "Wrong \"apiKey\" value.");

        let url = format!("{}?apiKey={DEFAULT_API_KEY}", t.url("/users"));
        let (status, _) = T::answer(t.http.get(url).send().await.expect("send")).await;
        assert_eq!(status, 200);

        let event = json!({"phone": "+79001234567", "type": "in", "codes": ["101"]}).to_string();
        let form = [("apiKey", DEFAULT_API_KEY), ("event", event.as_str())];
        let r = t
            .http
            .post(t.url("/telephony/call/event"))
            .form(&form)
            .send()
            .await
            .expect("send");
        assert_eq!(T::answer(r).await.0, 200);
    }

    #[tokio::test]
    async fn unknown_paths_and_wrong_methods_get_the_real_answers() {
        let t = T::new().await;
        let (status, body) = t.get("/telephony/call-event").await;
        assert_eq!(status, 404);
        assert_eq!(
            body,
            json!({"success": false, "errorMsg": "API method not found"})
        );
        let r = t
            .http
            .get(format!("{}/api/v5/../x", t.sim.base_url()))
            .send()
            .await
            .expect("send");
        assert_eq!(T::answer(r).await.0, 404);
        let (status, body) = t.get("/telephony/call/event").await;
        assert_eq!(status, 405);
        assert_eq!(body["success"], false);
        let (status, body) = t.post("/users", &[]).await;
        assert_eq!(
            (status, body["errorMsg"].clone()),
            (405, json!("Method Not Allowed"))
        );
    }

    #[tokio::test]
    async fn credentials_and_versions_are_unversioned() {
        let t = T::new().await;
        let url = format!("{}/api/credentials", t.sim.base_url());
        let r = t
            .http
            .get(url)
            .header("X-API-KEY", DEFAULT_API_KEY)
            .send()
            .await
            .expect("send");
        let (status, body) = T::answer(r).await;
        assert_eq!(status, 200);
        assert_eq!(body["sitesAvailable"], json!([DEFAULT_SITE]));
        assert_eq!(t.get("/credentials").await.0, 404);
    }

    #[tokio::test]
    async fn rate_limit_kicks_in_past_the_limit_and_recovers() {
        let opts = SimOptions {
            rate_limit: Some(RateLimit {
                per_sec: 5,
                telephony_per_sec: 8,
            }),
            ..SimOptions::default()
        };
        let t = T::with(opts).await;
        let mut statuses = Vec::new();
        // Twenty back-to-back requests cannot take four seconds, so the bucket must run dry.
        for _ in 0..20 {
            let (status, body) = t.get("/reference/statuses").await;
            if status == 503 {
                assert_eq!(
                    body,
                    json!({"success": false, "errorMsg": "Service temporary unavailable"})
                );
            }
            statuses.push(status);
        }
        assert!(statuses[..5].iter().all(|&s| s == 200), "{statuses:?}");
        assert!(statuses.contains(&503), "{statuses:?}");

        // Telephony has its own budget.
        let (status, _) = t.get("/telephony/manager?phone=123456").await;
        assert_eq!(status, 200);

        tokio::time::sleep(Duration::from_millis(1100)).await;
        assert_eq!(t.get("/reference/statuses").await.0, 200);

        // Wrong keys are refused before they can spend the budget.
        let r = t
            .http
            .get(t.url("/users"))
            .header("X-API-KEY", "other")
            .send()
            .await
            .expect("send");
        assert_eq!(T::answer(r).await.0, 403);
    }

    #[tokio::test]
    async fn faults_are_consumed_in_order_and_can_target_one_path() {
        let t = T::new().await;
        t.sim.inject(Fault::Status503 { times: 2 });
        let r = t.http.get(t.url("/users")).send().await.expect("send");
        assert_eq!(r.status().as_u16(), 503);
        assert!(r
            .text()
            .await
            .expect("body")
            .contains("503 Service Temporarily Unavailable"));
        assert_eq!(t.get("/users").await.0, 503);
        assert_eq!(t.get("/users").await.0, 200);

        t.sim.inject(Fault::RateLimited {
            times: 1,
            retry_after_secs: Some(2),
        });
        let r = t
            .http
            .get(t.url("/users"))
            .header("X-API-KEY", DEFAULT_API_KEY)
            .send()
            .await
            .expect("send");
        assert_eq!(r.status().as_u16(), 503);
        assert_eq!(
            r.headers().get("retry-after").and_then(|v| v.to_str().ok()),
            Some("2")
        );

        t.sim.inject(Fault::ApiError {
            times: 1,
            status: 429,
            error_msg: "Too many requests".into(),
            errors: Value::Null,
        });
        assert_eq!(
            t.get("/users").await,
            (
                429,
                json!({"success": false, "errorMsg": "Too many requests"})
            )
        );

        t.sim
            .inject(Fault::Status503 { times: 1 }.on_path("/telephony/calls/upload"));
        assert_eq!(t.get("/users").await.0, 200);
        let calls = json!([{"date": "2024-05-01 10:00:00", "type": "in", "phone": "100200", "externalId": "f1"}]);
        assert_eq!(
            t.post_json("/telephony/calls/upload", "calls", calls.clone())
                .await
                .0,
            503
        );
        assert_eq!(
            t.post_json("/telephony/calls/upload", "calls", calls)
                .await
                .0,
            200
        );

        t.sim.inject(
            Fault::Delay {
                times: 1,
                delay: Duration::from_millis(300),
            }
            .on_path("/api/v5/users"),
        );
        let started = Instant::now();
        assert_eq!(t.get("/users").await.0, 200);
        assert!(started.elapsed() >= Duration::from_millis(300));

        t.sim.inject(Fault::Status503 { times: 5 });
        t.sim.clear_faults();
        assert_eq!(t.get("/users").await.0, 200);
    }

    #[tokio::test]
    async fn latency_delays_every_answer_and_requests_are_logged() {
        let opts = SimOptions {
            latency: Some(Duration::from_millis(150)),
            rate_limit: None,
            ..SimOptions::default()
        };
        let t = T::with(opts).await;
        let started = Instant::now();
        assert_eq!(t.get("/users/3").await.0, 200);
        assert_eq!(t.get("/users/99").await.0, 404);
        assert!(started.elapsed() >= Duration::from_millis(300));
        let log = t.sim.state().requests;
        let seen: Vec<(&str, &str, u16)> = log
            .iter()
            .map(|r| (r.method.as_str(), r.path.as_str(), r.status))
            .collect();
        assert_eq!(
            seen,
            [
                ("GET", "/api/v5/users/3", 200),
                ("GET", "/api/v5/users/99", 404)
            ]
        );
        let text = serde_json::to_string(&log[0]).expect("serialize");
        let back: RequestLog = serde_json::from_str(&text).expect("deserialize");
        assert_eq!(back, log[0]);
    }

    #[tokio::test]
    async fn shutdown_stops_accepting_connections() {
        let t = T::new().await;
        assert_eq!(t.get("/users").await.0, 200);
        t.sim.shutdown();
        let mut refused = false;
        for _ in 0..50 {
            if reqwest::Client::new()
                .get(t.url("/users"))
                .send()
                .await
                .is_err()
            {
                refused = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(refused);
    }

    // -- telephony --

    #[tokio::test]
    async fn call_event_reports_unknown_codes_and_users_and_is_recorded() {
        let t = T::new().await;
        let event = json!({
            "phone": "+79001234567", "type": "in", "codes": ["101", "999"], "userIds": [3, 42],
            "callExternalId": "pbx-1", "externalPhone": "74950000000", "site": DEFAULT_SITE,
            "webAnalyticsData": {"campaign": {"name": "spring", "code": "s1"}},
        });
        let (status, body) = t.post_json("/telephony/call/event", "event", event).await;
        assert_eq!(status, 200);
        assert_eq!(
            body,
            json!({"success": true, "notExistCodes": ["999"], "notExistUsers": [42]})
        );
        let hangup = json!({"phone": "+79001234567", "type": "hangup", "codes": ["101"],
                            "hangupStatus": "no answered", "callExternalId": "pbx-1"});
        assert_eq!(
            t.post_json("/telephony/call/event", "event", hangup)
                .await
                .0,
            200
        );

        let events = t.sim.state().call_events;
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].codes, ["101", "999"]);
        assert_eq!(events[0].user_ids, [3, 42]);
        assert_eq!(events[0].call_external_id.as_deref(), Some("pbx-1"));
        assert_eq!(events[1].r#type, "hangup");
        assert_eq!(events[1].hangup_status.as_deref(), Some("no answered"));
    }

    #[tokio::test]
    async fn call_event_errors_have_the_real_shapes() {
        let t = T::new().await;
        let (status, body) = t.post("/telephony/call/event", &[]).await;
        assert_eq!(status, 400);
        assert_eq!(
            body,
            json!({"success": false, "errorMsg": "Parameter 'event' is missing"})
        );

        let (status, body) = t
            .post("/telephony/call/event", &[("event", "{not json")])
            .await;
        assert_eq!(status, 400);
        assert_eq!(body["errorMsg"], "Errors in the entity format");
        assert!(body["errors"]["event"].is_string());

        let (status, body) = t
            .post_json("/telephony/call/event", "event", json!({"type": "ringing"}))
            .await;
        assert_eq!(status, 400);
        assert_eq!(body["errors"]["phone"], BLANK);
        assert_eq!(body["errors"]["type"], CHOICE);

        let bad = json!({"phone": "1", "type": "hangup", "hangupStatus": "no answer"});
        let (status, body) = t.post_json("/telephony/call/event", "event", bad).await;
        assert_eq!(
            (status, body["errors"]["hangupStatus"].clone()),
            (400, json!(CHOICE))
        );
        assert!(t.sim.state().call_events.is_empty());
    }

    #[tokio::test]
    async fn calls_upload_counts_new_calls_and_lists_duplicates() {
        let t = T::new().await;
        let call = |ext: &str, result: &str| {
            json!({"date": "2024-05-01 10:00:00", "type": "in", "phone": "+79001234567", "code": "101",
                   "result": result, "duration": 42, "durationWaiting": 5, "externalId": ext,
                   "recordUrl": "http://127.0.0.1/rec.mp3", "externalPhone": "74950000000"})
        };
        let (status, body) = t
            .post_json(
                "/telephony/calls/upload",
                "calls",
                json!([call("a", "answered"), call("b", "no answer")]),
            )
            .await;
        assert_eq!(status, 200);
        assert_eq!(
            body,
            json!({"success": true, "processedCallsCount": 2, "duplicateCalls": []})
        );

        let (_, body) = t
            .post_json(
                "/telephony/calls/upload",
                "calls",
                json!([call("a", "answered"), call("c", "busy")]),
            )
            .await;
        assert_eq!(
            body,
            json!({"success": true, "processedCallsCount": 1, "duplicateCalls": ["a"]})
        );

        let calls = t.sim.state().calls;
        let ids: Vec<_> = calls
            .iter()
            .map(|c| c.external_id.clone().unwrap_or_default())
            .collect();
        assert_eq!(ids, ["a", "b", "c"]);
        assert_eq!(calls[1].result.as_deref(), Some("no answer"));
        assert_eq!(calls[0].duration, Some(42));
    }

    #[tokio::test]
    async fn calls_upload_rejects_invalid_results_types_and_dates() {
        let t = T::new().await;
        let calls = json!([
            {"date": "2024-05-01 10:00:00", "type": "in", "phone": "1", "result": "answered", "externalId": "ok"},
            {"date": "2024-05-01 10:00:00", "type": "in", "phone": "1", "result": "missed"},
            {"date": "2024-05-01T10:00:00", "type": "hangup", "phone": "1"},
        ]);
        let (status, body) = t.post_json("/telephony/calls/upload", "calls", calls).await;
        assert_eq!(status, 400);
        assert_eq!(body["errorMsg"], "Errors in the entity format");
        assert_eq!(body["errors"]["calls[1][result]"], CHOICE);
        assert_eq!(body["errors"]["calls[2][type]"], CHOICE);
        assert_eq!(body["errors"]["calls[2][date]"], NOT_DATETIME);
        assert!(
            t.sim.state().calls.is_empty(),
            "a rejected batch stores nothing"
        );

        let (status, body) = t.post("/telephony/calls/upload", &[("calls", "{}")]).await;
        assert_eq!(
            (status, body["errors"]["calls"].clone()),
            (400, json!(NOT_ARRAY))
        );
        let (status, body) = t.post("/telephony/calls/upload", &[]).await;
        assert_eq!(
            (status, body["errorMsg"].clone()),
            (400, json!("Parameter 'calls' is missing"))
        );
    }

    #[tokio::test]
    async fn telephony_manager_finds_the_customer_and_responsible_manager_by_phone() {
        let t = T::new().await;
        let customer = json!({"firstName": "Ivan", "lastName": "Sidorov", "managerId": 4,
                              "phones": [{"number": "+7 (900) 123-45-67"}], "externalId": "c-1"});
        let (status, body) = t.post_json("/customers/create", "customer", customer).await;
        assert_eq!(status, 201);
        let cid = body["id"].as_u64().expect("id");
        let order = json!({"customer": {"id": cid}, "status": "new"});
        let (_, body) = t.post_json("/orders/create", "order", order).await;
        let oid = body["id"].as_u64().expect("id");

        let (status, body) = t
            .get("/telephony/manager?phone=89001234567&details=1")
            .await;
        assert_eq!(status, 200);
        assert_eq!(body["manager"]["id"], 4);
        assert_eq!(body["manager"]["code"], "102");
        assert_eq!(body["customer"]["id"], cid);
        assert_eq!(
            body["customer"]["phones"][0]["number"],
            "+7 (900) 123-45-67"
        );
        let base = t.sim.base_url();
        assert_eq!(
            body["links"]["customerLink"],
            format!("{base}/customers/{cid}")
        );
        assert_eq!(
            body["links"]["lastOrderLink"],
            format!("{base}/orders/{oid}/edit")
        );
        assert_eq!(
            body["links"]["newOrderLink"],
            format!("{base}/orders/add?phone=89001234567")
        );

        let (status, body) = t.get("/telephony/manager?phone=5550000&details=1").await;
        assert_eq!(status, 200);
        assert!(body.get("manager").is_none() && body.get("customer").is_none());
        assert!(body["links"]["newCustomerLink"].is_string());
        let (status, body) = t.get("/telephony/manager").await;
        assert_eq!(
            (status, body["errorMsg"].clone()),
            (400, json!("Parameter 'phone' is missing"))
        );
    }

    // -- users and reference books --

    #[tokio::test]
    async fn users_filter_paginate_and_reject_bad_limits() {
        let mut users = SimOptions::default().users;
        users.push(SimUser {
            id: 9,
            first_name: "Old".into(),
            last_name: "Admin".into(),
            code: None,
            is_manager: false,
            active: false,
        });
        let t = T::with(SimOptions {
            users,
            rate_limit: None,
            ..SimOptions::default()
        })
        .await;
        let (status, body) = t
            .get("/users?filter[isManager]=1&filter[active]=1&limit=20&page=1")
            .await;
        assert_eq!(status, 200);
        let ids: Vec<_> = body["users"]
            .as_array()
            .expect("users")
            .iter()
            .map(|u| u["id"].clone())
            .collect();
        assert_eq!(ids, [json!(3), json!(4), json!(7)]);
        assert_eq!(
            body["pagination"],
            json!({"limit": 20, "totalCount": 3, "currentPage": 1, "totalPageCount": 1})
        );
        let (_, body) = t.get("/users?filter%5Bactive%5D=0").await;
        assert_eq!(body["users"][0]["id"], 9);
        assert_eq!(body["users"][0]["isManager"], false);

        let (status, body) = t.get("/users?limit=25").await;
        assert_eq!(status, 400);
        assert_eq!(body["errorMsg"], "Errors in the input parameters");
        assert_eq!(t.get("/users?page=0").await.0, 400);

        let (status, body) = t.get("/users/7").await;
        assert_eq!(
            (status, body["user"]["firstName"].clone()),
            (200, json!("Svetlana"))
        );
        assert_eq!(
            t.get("/users/8").await,
            (404, json!({"success": false, "errorMsg": "Not found"}))
        );
        assert_eq!(
            t.post("/users/3/status", &[("status", "dinner")]).await.0,
            200
        );
        assert_eq!(t.get("/users/3").await.1["user"]["status"], "dinner");
    }

    #[tokio::test]
    async fn reference_books_ship_the_default_groups() {
        let t = T::new().await;
        let (status, body) = t.get("/reference/status-groups").await;
        assert_eq!(status, 200);
        let groups = body["statusGroups"].as_object().expect("groups");
        for g in [
            "new",
            "approval",
            "assembling",
            "delivery",
            "complete",
            "cancel",
        ] {
            assert!(groups.contains_key(g), "{g}");
        }
        assert_eq!(groups["approval"]["process"], true);
        assert_eq!(groups["complete"]["process"], false);
        let (_, body) = t.get("/reference/statuses").await;
        assert_eq!(body["statuses"]["new"]["group"], "new");
        assert_eq!(body["statuses"]["cancel-other"]["group"], "cancel");
        let (_, body) = t.get("/reference/order-methods").await;
        assert_eq!(body["orderMethods"]["phone"]["code"], "phone");
    }

    // -- customers --

    #[tokio::test]
    async fn customers_create_get_edit_and_refuse_duplicate_external_ids() {
        let t = T::new().await;
        let customer = json!({"externalId": "ext-1", "firstName": "Olga", "lastName": "Kuznetsova",
                              "email": "olga@example.com", "phones": [{"number": "+79005551122"}],
                              "managerId": 3, "source": {"source": "phone"}});
        let r = t
            .post(
                "/customers/create",
                &[("customer", &customer.to_string()), ("site", DEFAULT_SITE)],
            )
            .await;
        assert_eq!(r, (201, json!({"success": true, "id": 1})));

        let (status, body) = t
            .post_json(
                "/customers/create",
                "customer",
                json!({"externalId": "ext-1"}),
            )
            .await;
        assert_eq!(status, 400);
        assert_eq!(body["errorMsg"], "Errors in the entity format");
        assert_eq!(
            body["errors"]["externalId"],
            "Customer with externalId=ext-1 already exists."
        );

        let (status, body) = t.get("/customers/ext-1").await;
        assert_eq!(status, 200);
        assert_eq!(body["customer"]["id"], 1);
        assert_eq!(body["customer"]["type"], "customer");
        assert_eq!(body["customer"]["source"]["source"], "phone");
        assert_eq!(
            t.get("/customers/1?by=id").await.1["customer"]["externalId"],
            "ext-1"
        );
        assert_eq!(
            t.get("/customers/1").await,
            (404, json!({"success": false, "errorMsg": "Not found"}))
        );
        assert_eq!(t.get("/customers/1?by=number").await.0, 400);

        let edit = json!({"managerId": 4, "phones": [{"number": "8 (900) 555-00-00"}]});
        let r = t
            .post(
                "/customers/1/edit",
                &[
                    ("customer", &edit.to_string()),
                    ("by", "id"),
                    ("site", DEFAULT_SITE),
                ],
            )
            .await;
        assert_eq!(r, (200, json!({"success": true, "id": 1})));
        let c = &t.sim.state().customers[0];
        assert_eq!(
            (c.manager_id, c.first_name.as_deref()),
            (Some(4), Some("Olga"))
        );
        assert_eq!(
            t.get("/customers?filter[name]=79005550000").await.1["customers"][0]["id"],
            1
        );
        assert_eq!(
            t.get("/customers?filter[name]=79005551122").await.1["pagination"]["totalCount"],
            0
        );

        let bad = json!({"managerId": 99, "email": "nope"});
        let (status, body) = t.post_json("/customers/ext-1/edit", "customer", bad).await;
        assert_eq!(status, 400);
        assert!(body["errors"]["managerId"].is_string() && body["errors"]["email"].is_string());
        assert_eq!(
            t.post_json("/customers/ext-9/edit", "customer", json!({}))
                .await
                .0,
            404
        );
        assert_eq!(
            t.post("/customers/create", &[("site", DEFAULT_SITE)])
                .await
                .1["errorMsg"],
            "Parameter 'customer' is missing"
        );
    }

    #[tokio::test]
    async fn customers_list_filters_by_ids_external_ids_and_name_or_phone() {
        let t = T::new().await;
        for (ext, first, phone) in [
            ("a", "Anton", "+7 900 111-22-33"),
            ("b", "Boris", "89002223344"),
            ("c", "Vera", "+79002223344"),
        ] {
            let c = json!({"externalId": ext, "firstName": first, "phones": [{"number": phone}]});
            assert_eq!(t.post_json("/customers/create", "customer", c).await.0, 201);
        }
        let ids = |body: &Value| -> Vec<u64> {
            body["customers"]
                .as_array()
                .expect("list")
                .iter()
                .filter_map(|c| c["id"].as_u64())
                .collect()
        };
        let (status, body) = t.get("/customers?filter[name]=%2B7(900)222-33-44").await;
        assert_eq!(status, 200);
        assert_eq!(
            ids(&body),
            [3, 2],
            "newest first, both formats of one number"
        );
        assert_eq!(ids(&t.get("/customers?filter[name]=anton").await.1), [1]);
        assert_eq!(
            ids(&t.get("/customers?filter[ids][]=1&filter[ids][]=3").await.1),
            [3, 1]
        );
        assert_eq!(
            ids(&t.get("/customers?filter[externalIds][]=b").await.1),
            [2]
        );
        assert_eq!(ids(&t.get("/customers").await.1), [3, 2, 1]);
    }

    #[tokio::test]
    async fn customers_paginate() {
        let t = T::new().await;
        for i in 0..25 {
            t.sim
                .seed_customer(json!({"firstName": format!("C{i}")}))
                .expect("seed");
        }
        let (status, body) = t.get("/customers?limit=20&page=2").await;
        assert_eq!(status, 200);
        assert_eq!(body["customers"].as_array().map(Vec::len), Some(5));
        assert_eq!(
            body["pagination"],
            json!({"limit": 20, "totalCount": 25, "currentPage": 2, "totalPageCount": 2})
        );
        assert_eq!(
            t.get("/customers?limit=50").await.1["customers"]
                .as_array()
                .map(Vec::len),
            Some(25)
        );
        let (_, body) = t.get("/customers?filter[name]=nobody").await;
        assert_eq!(body["pagination"]["totalPageCount"], 0);
    }

    // -- orders --

    #[tokio::test]
    async fn orders_create_list_get_and_edit() {
        let t = T::new().await;
        let cid = t
            .sim
            .seed_customer(json!({"externalId": "cust-7", "firstName": "Ivan", "managerId": 3}))
            .expect("seed");
        let order = json!({"externalId": "call-1", "customer": {"externalId": "cust-7"}, "managerId": 3,
                           "orderMethod": "phone", "status": "new", "phone": "+79001112233",
                           "customFields": {"utm_source": "ya"}});
        let (status, body) = t
            .post(
                "/orders/create",
                &[("order", &order.to_string()), ("site", DEFAULT_SITE)],
            )
            .await;
        assert_eq!(status, 201);
        assert_eq!(body["id"], 1);
        assert_eq!(body["order"]["number"], "1A");
        assert_eq!(body["order"]["customer"]["id"], cid);
        assert_eq!(body["order"]["customer"]["type"], "customer");
        assert_eq!(body["order"]["customFields"]["utm_source"], "ya");

        let (_, body) = t
            .post_json("/orders/create", "order", json!({"externalId": "call-1"}))
            .await;
        assert_eq!(
            body["errors"]["externalId"],
            "Order with externalId=call-1 already exists."
        );
        let bad = json!({"status": "done", "orderMethod": "fax", "customer": {"id": 99}});
        let (status, body) = t.post_json("/orders/create", "order", bad).await;
        assert_eq!(status, 400);
        for field in ["status", "orderMethod", "customer"] {
            assert!(body["errors"][field].is_string(), "{field}: {body}");
        }

        let (_, body) = t.get(&format!("/orders?filter[customerId]={cid}")).await;
        assert_eq!(body["orders"][0]["externalId"], "call-1");
        let (_, body) = t
            .get("/orders?filter[customerExternalId]=cust-7&filter[extendedStatus][]=new")
            .await;
        assert_eq!(body["pagination"]["totalCount"], 1);
        let (_, body) = t
            .get("/orders?filter[customerExternalId]=cust-7&filter[extendedStatus][]=complete")
            .await;
        assert_eq!(body["pagination"]["totalCount"], 0);
        assert_eq!(t.get("/orders/call-1").await.1["order"]["id"], 1);
        assert_eq!(
            t.get("/orders/1?by=id").await.1["order"]["externalId"],
            "call-1"
        );
        assert_eq!(t.get("/orders/nope").await.0, 404);

        let edit = json!({"status": "complete", "managerId": 4});
        let (status, body) = t
            .post(
                "/orders/call-1/edit",
                &[("order", &edit.to_string()), ("by", "externalId")],
            )
            .await;
        assert_eq!(status, 200);
        assert_eq!(
            (
                body["order"]["status"].clone(),
                body["order"]["managerId"].clone()
            ),
            (json!("complete"), json!(4))
        );
        assert_eq!(t.sim.state().orders[0].status, "complete");
        assert_eq!(
            t.post_json("/orders/call-1/edit", "order", json!({"status": "x"}))
                .await
                .0,
            400
        );
        assert_eq!(
            t.post_json("/orders/1/edit", "order", json!({})).await.0,
            404,
            "by defaults to externalId"
        );
    }

    #[tokio::test]
    async fn an_order_without_customer_creates_one_from_its_contact_data() {
        let t = T::new().await;
        let order = json!({"firstName": "Nina", "phone": "+79007778899", "managerId": 7});
        let (status, body) = t.post_json("/orders/create", "order", order).await;
        assert_eq!(status, 201);
        let state = t.sim.state();
        assert_eq!(state.customers.len(), 1);
        assert_eq!(
            state.customers[0].phones,
            [Phone {
                number: "+79007778899".into()
            }]
        );
        assert_eq!(state.customers[0].manager_id, Some(7));
        assert_eq!(body["order"]["customer"]["id"], state.customers[0].id);
        let (_, body) = t.get("/orders?filter[customer]=89007778899").await;
        assert_eq!(body["pagination"]["totalCount"], 1);
    }

    // -- tasks --

    #[tokio::test]
    async fn tasks_create_filter_and_get() {
        let t = T::new().await;
        let cid = t
            .sim
            .seed_customer(json!({"firstName": "Petr", "phones": [{"number": "+79003334455"}]}))
            .expect("seed");
        let oid = t
            .sim
            .seed_order(json!({"customer": {"id": cid}}))
            .expect("seed");
        let task = json!({"text": "Listen to the call", "performerId": 4, "commentary": "http://rec/1.mp3",
                          "datetime": "2024-05-01 12:30", "complete": true, "customer": {"id": cid},
                          "order": {"number": format!("{oid}A")}, "phone": "+79003334455"});
        assert_eq!(
            t.post(
                "/tasks/create",
                &[("task", &task.to_string()), ("site", DEFAULT_SITE)]
            )
            .await,
            (201, json!({"success": true, "id": 1}))
        );
        let open = json!({"text": "Review the call", "performerId": 3, "customer": {"id": cid}});
        assert_eq!(t.post_json("/tasks/create", "task", open).await.0, 201);

        let (_, body) = t.get("/tasks?filter[performers][]=4").await;
        assert_eq!(body["tasks"][0]["performer"], 4);
        assert_eq!(body["tasks"][0]["complete"], true);
        assert_eq!(body["tasks"][0]["order"]["id"], oid);
        assert!(body["tasks"][0]["completedAt"].is_string());
        let (_, body) = t.get("/tasks?filter[status]=performing").await;
        assert_eq!(body["tasks"].as_array().map(Vec::len), Some(1));
        assert_eq!(body["tasks"][0]["text"], "Review the call");
        let (_, body) = t
            .get("/tasks?filter[customer]=89003334455&filter[text]=listen")
            .await;
        assert_eq!(body["pagination"]["totalCount"], 1);
        assert_eq!(t.get("/tasks/2").await.1["task"]["performerType"], "user");
        assert_eq!(t.get("/tasks/3").await.0, 404);

        assert_eq!(
            t.post_json("/tasks/2/edit", "task", json!({"complete": true}))
                .await
                .0,
            200
        );
        assert!(t.sim.state().tasks[1].complete);
    }

    #[tokio::test]
    async fn tasks_reject_missing_text_and_unknown_performers() {
        let t = T::new().await;
        let (status, body) = t
            .post_json("/tasks/create", "task", json!({"performerId": 42}))
            .await;
        assert_eq!(status, 400);
        assert_eq!(body["errors"]["text"], BLANK);
        assert_eq!(body["errors"]["performerId"], "User not found.");
        let (_, body) = t
            .post_json(
                "/tasks/create",
                "task",
                json!({"text": "x", "datetime": "tomorrow"}),
            )
            .await;
        assert_eq!(body["errors"]["performerId"], BLANK);
        assert_eq!(body["errors"]["datetime"], NOT_DATETIME);
        assert!(t.sim.state().tasks.is_empty());
        assert_eq!(t.get("/tasks?filter[status]=open").await.0, 400);
    }

    // -- integration modules --

    #[tokio::test]
    async fn integration_module_codes_replace_the_extension_map() {
        let t = T::new().await;
        assert_eq!(t.get("/integration-modules/callbridge").await.0, 404);
        let module = |codes: Value| {
            json!({"code": "callbridge", "integrationCode": "callbridge", "active": true, "name": "callbridge",
                   "logo": "https://example.com/logo.svg", "baseUrl": "http://127.0.0.1:1",
                   "clientId": "tenant-1", "integrations": {"telephony": {
                       "makeCallUrl": "http://127.0.0.1:1/call", "allowEdit": false,
                       "inputEventSupported": true, "outputEventSupported": true, "hangupEventSupported": true,
                       "additionalCodes": codes}}})
        };
        let event = json!({"phone": "1", "type": "in", "codes": ["555", "101"]});

        let r = t
            .post_json(
                "/integration-modules/callbridge/edit",
                "integrationModule",
                module(json!([{"userId": 4, "code": "555"}])),
            )
            .await;
        assert_eq!(r, (200, json!({"success": true, "info": {}})));
        let (_, body) = t
            .post_json("/telephony/call/event", "event", event.clone())
            .await;
        assert_eq!(body["notExistCodes"], json!([]));
        let (_, body) = t.get("/integration-modules/callbridge").await;
        assert_eq!(body["integrationModule"]["clientId"], "tenant-1");

        // Re-registering replaces the list: 555 is gone, profile codes stay.
        let r = t
            .post_json(
                "/integration-modules/callbridge/edit",
                "integrationModule",
                module(json!([{"userId": "3", "code": "556"}])),
            )
            .await;
        assert_eq!(r.0, 200);
        let (_, body) = t.post_json("/telephony/call/event", "event", event).await;
        assert_eq!(body["notExistCodes"], json!(["555"]));
        assert_eq!(t.sim.state().integration_modules.len(), 1);

        let mut bad = module(json!([{"userId": 99, "code": "1"}]));
        bad["baseUrl"] = json!("");
        bad["logo"] = json!("https://example.com/logo.png");
        let (status, body) = t
            .post_json(
                "/integration-modules/callbridge/edit",
                "integrationModule",
                bad,
            )
            .await;
        assert_eq!(status, 400);
        assert_eq!(body["errors"]["baseUrl"], BLANK);
        assert_eq!(body["errors"]["logo"], "Logo image must be svg");
        assert!(body["errors"]["integrations[telephony][additionalCodes][0][userId]"].is_string());
        let r = t
            .post(
                "/integration-modules/callbridge/edit",
                &[("integrationModule", "[1]")],
            )
            .await;
        assert_eq!(r.0, 400);
    }

    // -- helpers --

    #[test]
    fn bracket_keys_and_phones_normalize() {
        assert_eq!(normalize_key("filter[ids][]"), "filter.ids");
        assert_eq!(normalize_key("filter[ids][3]"), "filter.ids");
        assert_eq!(
            normalize_key("filter[customFields][nps][min]"),
            "filter.customFields.nps.min"
        );
        assert_eq!(normalize_key("limit"), "limit");
        assert_eq!(phone_key("+7 (900) 123-45-67"), phone_key("89001234567"));
        assert_eq!(phone_key("101").as_deref(), Some("101"));
        assert!(looks_like_phone("+7 (900) 123"));
        assert!(!looks_like_phone("Ivan 123456"));
        assert_eq!(percent_decode("a%20b%2Fc%"), "a b/c%");
    }
}
