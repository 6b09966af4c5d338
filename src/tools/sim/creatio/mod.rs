//! A Creatio (and BPMSoft) stand-in for the demo and the tests, served over HTTP on
//! loopback: stateful OData 4 over the entities callbridge reads and writes, both logins
//! (forms with cookies and the `BPMCSRF` check, OAuth 2.0 client credentials on
//! `/connect/token` of the same address), Creatio's own save logic (`SearchNumber`, case
//! numbers, the empty GUID), its error shapes, and faults a test injects. Written from
//! Creatio's documentation (`../shared/reference/creatio.md`), not from callbridge's
//! adapter.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::tools::sim::lock;

pub mod filter;
pub mod schema;
pub mod seed;
mod server;
pub mod store;

pub use seed::{default_employees, SimEmployee};
pub use store::{OdataError, EMPTY_GUID};

/// How the simulated installation is set up.
#[derive(Debug, Clone)]
pub struct CreatioSimOptions {
    /// The forms login's user and password.
    pub login: String,
    pub password: String,
    /// The OAuth client.
    pub client_id: String,
    pub client_secret: String,
    pub token_lifetime: Duration,
    /// `/0/odata` (.NET Framework) or `/odata` (.NET 8).
    pub odata_path: String,
    /// Set `BPMCSRF` only on a `GET /` after the login, as some installations do.
    pub csrf_after_root_get: bool,
    pub employees: Vec<SimEmployee>,
}

impl Default for CreatioSimOptions {
    fn default() -> Self {
        CreatioSimOptions {
            login: "callbridge".into(),
            password: "sim-password".into(),
            client_id: "callbridge-client".into(),
            client_secret: "sim-client-secret".into(),
            token_lifetime: Duration::from_secs(3600),
            odata_path: "/0/odata".into(),
            csrf_after_root_get: false,
            employees: default_employees(),
        }
    }
}

/// A failure injected with [`CreatioSim::inject`], consumed by the next matching requests
/// (before the login check, so it hits any request on the path).
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// HTTP 503 with an HTML page (IIS or a proxy in front of Creatio).
    Status503 { times: u32 },
    /// `{"error":{"code","message"}}` with this status.
    Error {
        times: u32,
        status: u16,
        message: String,
    },
    /// Wait, then answer normally.
    Delay { times: u32, delay: Duration },
    /// Carry the request out, then answer 504 instead of its answer (the record exists;
    /// the client cannot know).
    LoseAnswer { times: u32 },
    /// Only requests to `prefix` or below it (`/0/odata/Case` and `/0/odata/Case(…)`, not
    /// `/0/odata/CaseStatus`).
    OnPath { prefix: String, fault: Box<Fault> },
}

impl Fault {
    pub fn on_path(self, prefix: impl Into<String>) -> Fault {
        Fault::OnPath {
            prefix: prefix.into(),
            fault: Box::new(self),
        }
    }
}

/// One request the simulator answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimRequest {
    pub method: String,
    pub path: String,
    pub status: u16,
}

/// A running simulator; cheap to clone.
#[derive(Clone)]
pub struct CreatioSim {
    inner: Arc<server::Inner>,
    addr: SocketAddr,
    shutdown: watch::Sender<bool>,
}

impl std::fmt::Debug for CreatioSim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreatioSim")
            .field("addr", &self.addr)
            .finish()
    }
}

impl CreatioSim {
    /// Binds `127.0.0.1:0` and serves in a spawned task.
    pub async fn start(opts: CreatioSimOptions) -> std::io::Result<CreatioSim> {
        CreatioSim::start_on(SocketAddr::from(([127, 0, 0, 1], 0)), opts).await
    }

    /// Binds `addr` and serves in a spawned task.
    pub async fn start_on(
        addr: SocketAddr,
        opts: CreatioSimOptions,
    ) -> std::io::Result<CreatioSim> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let mut db = store::Db::default();
        seed::seed(&mut db, &opts.employees).map_err(|e| {
            std::io::Error::other(format!("seeding the Creatio simulator: {}", e.message))
        })?;
        let seeded: HashSet<String> = schema::ENTITIES
            .iter()
            .flat_map(|(entity, _)| db.records(entity))
            .filter_map(|r| r["Id"].as_str().map(str::to_string))
            .collect();
        let inner = Arc::new(server::Inner {
            login: opts.login,
            password: opts.password,
            client_id: opts.client_id,
            client_secret: opts.client_secret,
            token_lifetime: opts.token_lifetime,
            odata_path: opts.odata_path,
            csrf_after_root_get: opts.csrf_after_root_get,
            base_url: format!("http://{addr}"),
            db: Mutex::new(db),
            seeded: Mutex::new(seeded),
            sessions: Mutex::new(HashMap::new()),
            tokens: Mutex::new(HashMap::new()),
            faults: Mutex::new(VecDeque::new()),
            log: Mutex::new(Vec::new()),
            issued: Mutex::new(Vec::new()),
            logins: AtomicUsize::new(0),
            grants: AtomicUsize::new(0),
            in_flight: AtomicUsize::new(0),
            in_flight_paths: Mutex::new(Vec::new()),
        });
        let (shutdown, mut stop) = watch::channel(false);
        let app = Router::new()
            .fallback(server::handle)
            .with_state(inner.clone());
        tokio::spawn(async move {
            let signal = async move {
                let _ = stop.wait_for(|stopped| *stopped).await;
            };
            if let Err(e) = axum::serve(listener, app)
                .with_graceful_shutdown(signal)
                .await
            {
                tracing::warn!(error = %e, "Creatio simulator stopped serving");
            }
        });
        Ok(CreatioSim {
            inner,
            addr,
            shutdown,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`: the application root (`[crm] url`) and the Identity
    /// Service (`[crm] identity_url`) alike.
    pub fn base_url(&self) -> String {
        self.inner.base_url.clone()
    }

    /// Every record of `entity`, in the order they were made.
    pub fn records(&self, entity: &str) -> Vec<Value> {
        lock(&self.inner.db).records(entity)
    }

    /// The records of `entity` made through the API (not by the seed or [`Self::insert`]).
    pub fn made(&self, entity: &str) -> Vec<Value> {
        let seeded = lock(&self.inner.seeded);
        self.records(entity)
            .into_iter()
            .filter(|r| r["Id"].as_str().is_some_and(|id| !seeded.contains(id)))
            .collect()
    }

    /// Adds a record as `POST` would (same checks and save logic); returns its `Id`.
    pub fn insert(&self, entity: &str, record: Value) -> Result<String, OdataError> {
        let Value::Object(m) = record else {
            return Err(OdataError::bad("a record is a JSON object"));
        };
        let made = lock(&self.inner.db).insert(entity, &m, &server::now())?;
        let id = made["Id"].as_str().unwrap_or_default().to_string();
        lock(&self.inner.seeded).insert(id.clone());
        Ok(id)
    }

    /// Changes a record as `PATCH` would.
    pub fn update(&self, entity: &str, id: &str, fields: Value) -> Result<(), OdataError> {
        let Value::Object(m) = fields else {
            return Err(OdataError::bad("fields are a JSON object"));
        };
        lock(&self.inner.db).update(entity, id, &m, &server::now())
    }

    /// Queues a fault; faults are matched in the order they were injected.
    pub fn inject(&self, fault: Fault) {
        let (mut prefix, mut fault) = (None, fault);
        while let Fault::OnPath {
            prefix: p,
            fault: f,
        } = fault
        {
            prefix.get_or_insert(p);
            fault = *f;
        }
        let times = match &fault {
            Fault::Status503 { times }
            | Fault::Error { times, .. }
            | Fault::Delay { times, .. }
            | Fault::LoseAnswer { times } => *times,
            Fault::OnPath { .. } => 0,
        };
        if times > 0 {
            lock(&self.inner.faults).push_back((prefix, fault, times));
        }
    }

    /// Ends every session and token, as a session timeout or an application restart does.
    pub fn end_sessions(&self) {
        lock(&self.inner.sessions).clear();
        lock(&self.inner.tokens).clear();
    }

    /// Every session cookie, CSRF value and access token handed out so far.
    pub fn issued_secrets(&self) -> Vec<String> {
        lock(&self.inner.issued).clone()
    }

    /// Successful forms logins so far.
    pub fn logins(&self) -> usize {
        self.inner.logins.load(Ordering::SeqCst)
    }

    /// Tokens granted so far.
    pub fn token_grants(&self) -> usize {
        self.inner.grants.load(Ordering::SeqCst)
    }

    /// Requests being answered right now.
    pub fn in_flight(&self) -> usize {
        self.inner.in_flight.load(Ordering::SeqCst)
    }

    /// Whether a request `METHOD /path` (`POST /0/odata/Case`) is being answered now.
    pub fn answering(&self, request: &str) -> bool {
        lock(&self.inner.in_flight_paths)
            .iter()
            .any(|r| r == request)
    }

    /// Every request answered, in order.
    pub fn requests(&self) -> Vec<SimRequest> {
        lock(&self.inner.log).clone()
    }

    /// Stops accepting connections.
    pub fn shutdown(&self) {
        self.shutdown.send_replace(true);
    }
}

#[cfg(test)]
mod tests;
