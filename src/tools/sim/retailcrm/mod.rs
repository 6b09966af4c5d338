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
//! Resources, a file each: telephony (call events, call upload, responsible manager),
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

mod customers;
mod db;
mod errors;
mod faults;
mod fields;
mod orders;
mod rate_limit;
mod records;
mod reference;
mod routing;
mod server;
mod tasks;
mod telephony;
mod users;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::tools::sim::lock;
use db::Db;
use faults::FaultEntry;
use fields::entity_object;
use server::{handle, Inner};

pub use errors::SimError;
pub use faults::Fault;
pub use rate_limit::RateLimit;
pub use records::{
    CallEvent, Customer, EntityRef, Order, OrderRef, Phone, RequestLog, SimState, SimUser, Task,
    UploadedCall,
};
pub use reference::DEFAULT_SITE;
pub use server::{Observed, REQUEST_LOG_CAP};

/// The API key of [`SimOptions::default`].
pub const DEFAULT_API_KEY: &str = "demo-key";

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

#[cfg(test)]
mod tests;
