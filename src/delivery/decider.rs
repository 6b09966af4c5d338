//! Runs a matrix decision (`CrmAction::Decide`) at delivery time: reads what the matrix
//! needs from the CRM (the caller's customers and their orders, which statuses are
//! final, the managers and extension codes, cached), adds what earlier moments of the
//! same call decided (from the store), and calls the pure `matrix`. The outbox stores the
//! actions decided in the transaction that marks the decision done; a failed read is a
//! failed delivery, retried like any other.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Mutex;
use tracing::{info, warn};

use crate::actions::{CrmAction, DecideRequest, Moment};
use crate::config::Config;
use crate::crm::{CrmClient, CrmError};
use crate::directory::Directory;
use crate::links::LinkKey;
use crate::matrix::CreateOn;
use crate::matrix::{self, CrmSnapshot, Customer, Earlier, MatrixConfig, Order};
use crate::phone::{PhoneNormalizer, PhoneNumber};
use crate::store::{Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum DecideError {
    #[error("{0}")]
    Crm(#[from] CrmError),
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// Deciding now would make a second customer for the number: decided again later.
    #[error("{0}")]
    Wait(String),
}

/// What the CRM says that changes rarely: read again every `refresh`.
#[derive(Debug, Default)]
struct Cached {
    directory: Option<Directory>,
    /// The configuration with `directory` in it, made once per read (decisions share it).
    config: Option<Arc<MatrixConfig>>,
    /// Status code → status group code.
    closed_statuses: Option<HashMap<String, bool>>,
    read_at: Option<Instant>,
    /// How long the last read counts as fresh (shorter after a failed read).
    valid_for: Duration,
    /// Moved on by every reload: a read begun before it is not kept.
    generation: u64,
}

impl Cached {
    fn fresh(&self) -> bool {
        self.read_at.is_some_and(|t| t.elapsed() < self.valid_for)
    }
}

/// How soon a failed read of the CRM's reference data is tried again.
const RETRY_READ: Duration = Duration::from_secs(30);

#[derive(Debug, Clone)]
pub struct Decider {
    crm: CrmClient,
    normalizer: PhoneNormalizer,
    /// Replaced whole on a reload (SIGHUP); a decision reads the one current then.
    config: Arc<std::sync::RwLock<Arc<MatrixConfig>>>,
    module_code: Option<String>,
    refresh: Duration,
    cached: Arc<Mutex<Cached>>,
    /// Held while the CRM's reference data is read (one read at a time).
    reading: Arc<Mutex<()>>,
    warm: Arc<tokio::sync::OnceCell<()>>,
}

/// The key recording links are signed with: `[http] link_secret`, or a random one.
pub fn link_key(config: &Config) -> LinkKey {
    if config.http.link_secret.is_empty() {
        LinkKey::random()
    } else {
        LinkKey::new(config.http.link_secret.expose())
    }
}

impl Decider {
    /// `link_key` signs the recording links of its decisions (the HTTP side checks them
    /// with the same key: see [`link_key`]).
    pub fn new(
        crm: CrmClient,
        config: &Config,
        link_key: LinkKey,
    ) -> Result<Self, crate::phone::PhoneError> {
        let directory = Directory::new(
            config.employees.extensions.clone(),
            config.employees.senior.clone(),
        );
        Ok(Decider {
            crm,
            normalizer: PhoneNormalizer::new(&config.crm.default_region)?,
            config: Arc::new(std::sync::RwLock::new(Arc::new(MatrixConfig {
                create_on: config.matrix.create_on,
                order_method: config.crm.order_method.clone(),
                public_url: config.http.public_url.clone(),
                link_key,
                link_ttl: config.http.link_ttl,
                directory,
            }))),
            module_code: config.crm.module_code.clone(),
            refresh: config.crm.directory_refresh,
            cached: Arc::new(Mutex::new(Cached::default())),
            reading: Arc::new(Mutex::new(())),
            warm: Arc::new(tokio::sync::OnceCell::new()),
        })
    }

    /// Loads the phone-number metadata on a blocking thread (see
    /// `PhoneNormalizer::warm_up`); decisions wait for it instead of stalling an async
    /// worker (and the call processing on it) for the load.
    pub async fn warm_up(self) {
        self.ready().await;
    }

    async fn ready(&self) {
        let normalizer = self.normalizer;
        self.warm
            .get_or_init(|| async move {
                let _ = tokio::task::spawn_blocking(move || normalizer.warm_up()).await;
            })
            .await;
    }

    /// The actions for one moment of one call.
    pub async fn decide(
        &self,
        store: &Store,
        call_id: &str,
        request: &DecideRequest,
    ) -> Result<Vec<CrmAction>, DecideError> {
        self.ready().await;
        let header = &request.header;
        let phone = header
            .customer_number
            .as_deref()
            .and_then(|n| self.normalizer.normalize(n).ok());
        let config = self.current_config().await?;
        let Some(phone) = phone else {
            info!(number = ?header.customer_number, "no valid customer number: the call goes to the history only");
            return Ok(match (&request.moment, &header.customer_number) {
                (Moment::Ended { summary }, Some(number)) => {
                    matrix::decide_unverified(summary, number, &config)
                }
                _ => Vec::new(),
            });
        };
        // A ringing pop-up needs nothing earlier moments decided (unless customers are
        // made at ring): not reading them spares the pop-up a store round trip.
        let needs_earlier =
            !matches!(request.moment, Moment::Ringing { .. }) || config.create_on == CreateOn::Ring;
        let earlier = if needs_earlier {
            Earlier::from_actions(&store.call_actions(call_id).await?)
        } else {
            Earlier::default()
        };
        // Only what the moment needs is read: a ringing pop-up needs no lookup.
        let needs_customers = match &request.moment {
            Moment::Ringing { .. } => config.create_on == CreateOn::Ring,
            Moment::Answered { .. } => config.create_on == CreateOn::Answer,
            Moment::Ended { .. } => true,
        } && header.direction != crate::call::Direction::Internal;
        let chosen = if needs_customers {
            store
                .chosen_client(call_id)
                .await?
                .and_then(|id| crate::ids::CrmId::new(&id))
        } else {
            None
        };
        let snapshot = CrmSnapshot {
            customers: if needs_customers {
                self.customers(&phone).await?
            } else {
                Vec::new()
            },
            earlier,
            chosen,
        };
        // The campaign data the dialplan set, as the customer's and order's source.
        let source = crate::actions::Source::of_campaign(&header.campaign);
        let actions = match &request.moment {
            Moment::Ringing { new } => {
                matrix::decide_ringing(header, &phone, new, source, &snapshot, &config)
            }
            Moment::Answered { extension } => {
                matrix::decide_answered(header, &phone, extension, source, &snapshot, &config)
            }
            Moment::Ended { summary } => {
                matrix::decide(summary, Some(&phone), source, &snapshot, &config)
            }
        };
        // Another call from this number is creating its customer (the CRM does not have
        // it yet, so the lookup saw a new client): decide once it exists, as an existing
        // client, instead of making a second order for it.
        for action in &actions {
            if let CrmAction::CreateCustomer(c) = action {
                if let Some(other) = store
                    .pending_step_elsewhere(&c.external_id, call_id)
                    .await?
                {
                    return Err(DecideError::Wait(format!(
                        "call {other} is creating the customer for this number; deciding again once it exists"
                    )));
                }
            }
        }
        Ok(actions)
    }

    /// A ringing moment decided at once, from memory, when that is all it needs: no
    /// customer is made at ring, the phone metadata is loaded and the CRM's managers and
    /// codes were read recently. `None` when any of that is missing (or the cache is being
    /// read right now): the decision is then stored and made by the outbox, as any other.
    /// Never waits, so the call processor can call it while the phone rings.
    pub fn decide_ringing_now(&self, request: &DecideRequest) -> Option<Vec<CrmAction>> {
        let Moment::Ringing { new } = &request.moment else {
            return None;
        };
        if self.base().create_on == CreateOn::Ring || !self.warm.initialized() {
            return None;
        }
        let config = {
            // A read a little past its time is still good for a pop-up (the next
            // stored decision reads again); the cache is never waited for.
            let cached = self.cached.try_lock().ok()?;
            if cached
                .read_at
                .is_none_or(|t| t.elapsed() >= cached.valid_for + self.refresh)
            {
                return None;
            }
            cached.config.clone()?
        };
        let header = &request.header;
        let Some(phone) = header
            .customer_number
            .as_deref()
            .and_then(|n| self.normalizer.normalize(n).ok())
        else {
            info!(number = ?header.customer_number, "no valid customer number: the call goes to the history only");
            return Some(Vec::new());
        };
        let source = crate::actions::Source::of_campaign(&header.campaign);
        Some(matrix::decide_ringing(
            header,
            &phone,
            new,
            source,
            &CrmSnapshot::default(),
            &config,
        ))
    }

    /// Who has this number in the CRM (the operator panel's "who is calling"): the
    /// customers, with their orders marked open or closed; none for a number that cannot
    /// be read as one.
    pub async fn identify(&self, number: &str) -> Result<Vec<Customer>, DecideError> {
        self.ready().await;
        match self.normalizer.normalize(number) {
            Ok(phone) => self.customers(&phone).await,
            Err(_) => Ok(Vec::new()),
        }
    }

    /// The customers with this number, with their orders marked open or closed.
    async fn customers(&self, phone: &PhoneNumber) -> Result<Vec<Customer>, DecideError> {
        let found = self.crm.customers_by_phone(phone, &self.normalizer).await?;
        let closed = self.closed_statuses().await?;
        let mut customers = Vec::with_capacity(found.len());
        for c in found {
            let orders: Vec<Order> = self
                .crm
                .orders_of(c.id)
                .await?
                .into_iter()
                .map(|o| Order {
                    // A status the reference does not know is taken for open: a
                    // wrongly open order costs a task, a wrongly closed one a duplicate order.
                    open: closed.get(&o.status).is_none_or(|closed| !closed),
                    id: o.id,
                    number: o.number,
                    manager_id: o.manager_id,
                    created_at: o.created_at,
                })
                .collect();
            let last_activity = orders
                .iter()
                .map(|o| o.created_at.clone())
                .chain(c.created_at.clone())
                .max();
            customers.push(Customer {
                id: c.id,
                name: c.name,
                manager_id: c.manager_id,
                last_activity,
                orders,
            });
        }
        Ok(customers)
    }

    async fn closed_statuses(&self) -> Result<HashMap<String, bool>, DecideError> {
        self.refresh_if_stale().await;
        if let Some(closed) = self.cached.lock().await.closed_statuses.clone() {
            return Ok(closed);
        }
        // Never read yet (the CRM was down): without them no order can be judged, so a
        // transient failure fails the decision (retried). A refusal (a key without access
        // to the reference) leaves every order open: a task too many rather than a
        // second order for a client who has one.
        let closed = match self.crm.closed_statuses().await {
            Ok(closed) => closed,
            Err(e) if e.is_transient() => return Err(e.into()),
            Err(e) => {
                warn!(error = %e, "the CRM refused its order statuses; every order counts as open");
                HashMap::new()
            }
        };
        self.cached.lock().await.closed_statuses = Some(closed.clone());
        Ok(closed)
    }

    /// Reads the CRM's managers, extension codes and order statuses before the first
    /// call needs them (at start-up, before the PBX connections), for at most `limit`:
    /// a CRM that does not answer in time is read again at the first decision, and the
    /// PBXs are not kept waiting for it. Says whether everything was read.
    pub async fn prime(&self, limit: Duration) -> bool {
        tokio::time::timeout(limit, self.refresh_if_stale())
            .await
            .unwrap_or(false)
    }

    /// The configuration as loaded (or last reloaded), before the CRM's directory.
    fn base(&self) -> Arc<MatrixConfig> {
        match self.config.read() {
            Ok(c) => c.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// Takes a reloaded configuration's employees map and matrix options (the links'
    /// address, key and lifetime stay: the HTTP side serves with them). The CRM's
    /// managers and codes are read again at the next decision.
    pub async fn reconfigure(&self, config: &Config) {
        let old = self.base();
        let next = MatrixConfig {
            create_on: config.matrix.create_on,
            order_method: config.crm.order_method.clone(),
            directory: Directory::new(
                config.employees.extensions.clone(),
                config.employees.senior.clone(),
            ),
            ..(*old).clone()
        };
        match self.config.write() {
            Ok(mut c) => *c = Arc::new(next),
            Err(p) => *p.into_inner() = Arc::new(next),
        }
        let mut cached = self.cached.lock().await;
        cached.read_at = None;
        cached.directory = None;
        cached.config = None;
        cached.generation += 1;
    }

    /// The matrix configuration with the directory as last read from the CRM.
    async fn current_config(&self) -> Result<Arc<MatrixConfig>, DecideError> {
        self.refresh_if_stale().await;
        let cached = self.cached.lock().await;
        Ok(cached.config.clone().unwrap_or_else(|| self.base()))
    }

    /// Reads the CRM's managers, extension codes and statuses again when the last read
    /// is older than `directory_refresh`. A failed read keeps what was read before (the
    /// configuration alone, at first) and is tried again at the next decision. Says
    /// whether the cache is complete. The cache is not held while the CRM is read (one
    /// reader at a time): pop-ups decided from memory meanwhile use the last read.
    async fn refresh_if_stale(&self) -> bool {
        if self.cached.lock().await.fresh() {
            return true;
        }
        let _reading = self.reading.lock().await;
        let (old_directory, generation) = {
            let cached = self.cached.lock().await;
            if cached.fresh() {
                // Read by another decision while this one waited.
                return true;
            }
            (cached.directory.clone(), cached.generation)
        };
        let mut directory = self.base().directory.clone();
        let mut complete = true;
        match self.crm.active_managers().await {
            Ok(managers) => directory.sync_managers(managers),
            Err(e) => {
                complete = false;
                warn!(error = %e, "could not read the CRM's managers; keeping the last list");
                if let Some(old) = &old_directory {
                    directory.sync_managers(old.all_managers());
                }
            }
        }
        // retailCRM keeps extension codes in its telephony module (none without one);
        // Creatio in its users' telephony settings.
        {
            let module = self.module_code.as_deref().unwrap_or("");
            match self.crm.extension_codes(module).await {
                Ok(Some(codes)) => {
                    for c in directory.sync_codes(codes) {
                        warn!(extension = %c.extension, configured = %c.configured, crm = %c.crm,
                              "the CRM maps this extension to another user; the configuration wins");
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    complete = false;
                    warn!(error = %e, "could not read the CRM's extension codes; keeping the last ones");
                    if let Some(old) = &old_directory {
                        directory.sync_codes(old.codes());
                    }
                }
            }
        }
        let closed = match self.crm.closed_statuses().await {
            Ok(closed) => Some(closed),
            Err(e) => {
                complete = false;
                warn!(error = %e, "could not read the CRM's order statuses; keeping the last ones");
                None
            }
        };
        let mut cached = self.cached.lock().await;
        if cached.generation != generation {
            // Reloaded meanwhile: this read may be of the old map; the next decision
            // reads again.
            return false;
        }
        if closed.is_some() {
            cached.closed_statuses = closed;
        }
        cached.config = Some(Arc::new(MatrixConfig {
            directory: directory.clone(),
            ..(*self.base()).clone()
        }));
        cached.directory = Some(directory);
        // After a failed read, try again in half a minute rather than at every decision.
        cached.valid_for = if complete {
            self.refresh
        } else {
            RETRY_READ.min(self.refresh)
        };
        cached.read_at = Some(Instant::now());
        complete
    }
}
