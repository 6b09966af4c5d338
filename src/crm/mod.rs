//! The CRM side: what callbridge asks of a CRM (`Crm`), what a delivery attempt can end
//! in (`Delivered`, or a `CrmError` that says whether trying again can help), and the
//! adapters, one folder each: `retailcrm/` (API v5). The matrix speaks of clients,
//! orders, tasks, managers, pop-ups and the call history; an adapter maps them onto its
//! CRM's records and requests. `rate` is the request pacing adapters share.

pub mod creatio;
pub mod rate;
pub mod retailcrm;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;

use crate::actions::CrmAction;
use crate::config::{CreatioConfig, CrmConfig, CrmKind};
use crate::ids::CrmId;
use crate::phone::{PhoneNormalizer, PhoneNumber};
use creatio::CreatioCrm;

pub use retailcrm::{Registered, RetailCrm};

/// What callbridge asks of a CRM: to carry out the actions the matrix decided, and the
/// reads a decision needs (the caller's records, which orders are open, who the managers
/// are, which extension codes the CRM's telephony integration holds).
pub trait Crm: Send + Sync + std::fmt::Debug {
    /// Carries out one action. `in_doubt`: an earlier attempt may have worked (its
    /// answer was lost), so a record is looked up before it is created again.
    fn send<'a>(
        &'a self,
        action: &'a CrmAction,
        in_doubt: bool,
    ) -> BoxFuture<'a, Result<Delivered, CrmError>>;

    /// The clients whose phones include `phone` (compared in full, not by the CRM's
    /// search alone).
    fn customers_by_phone<'a>(
        &'a self,
        phone: &'a PhoneNumber,
        normalizer: &'a PhoneNormalizer,
    ) -> BoxFuture<'a, Result<Vec<CrmCustomer>, CrmError>>;

    /// A client's orders.
    fn orders_of(&self, customer_id: CrmId) -> BoxFuture<'_, Result<Vec<CrmOrder>, CrmError>>;

    /// Order status → whether an order in it is closed (retailCRM: its status group is
    /// one of `[crm] final_status_groups`; Creatio: the case status `IsFinal`).
    fn closed_statuses(&self) -> BoxFuture<'_, Result<HashMap<String, bool>, CrmError>>;

    /// The ids of the active managers.
    fn active_managers(&self) -> BoxFuture<'_, Result<Vec<CrmId>, CrmError>>;

    /// The extension codes the CRM gives users (extension, user id): retailCRM's
    /// telephony integration `module` (empty: none configured), Creatio's users'
    /// telephony settings; `None` when the CRM holds none.
    fn extension_codes<'a>(
        &'a self,
        module: &'a str,
    ) -> BoxFuture<'a, Result<Option<ExtensionCodes>, CrmError>>;

    /// Registers callbridge's telephony integration `module`, reachable at `base_url`,
    /// with `codes` (extension → user id).
    fn register<'a>(
        &'a self,
        module: &'a str,
        base_url: &'a str,
        codes: &'a BTreeMap<String, CrmId>,
    ) -> BoxFuture<'a, Result<Registered, CrmError>>;

    /// Whether the CRM answered lately (for `/health`).
    fn reach(&self) -> Reach;
}

/// Extension codes a CRM's telephony integration gives users: (extension, user id).
pub type ExtensionCodes = Vec<(String, CrmId)>;

/// The CRM the configuration names, shared by every task that talks to it.
pub type CrmClient = Arc<dyn Crm>;

/// The adapter for `[crm] kind`.
pub fn connect(config: &CrmConfig, creatio: &CreatioConfig) -> Result<CrmClient, CrmError> {
    Ok(match config.kind {
        CrmKind::RetailCrm => Arc::new(RetailCrm::new(config)?),
        CrmKind::Creatio | CrmKind::BpmSoft => Arc::new(CreatioCrm::new(config, creatio)?),
    })
}

/// A client as a decision needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrmCustomer {
    pub id: CrmId,
    pub name: String,
    pub manager_id: Option<CrmId>,
    /// `Y-m-d H:i:s`.
    pub created_at: Option<String>,
}

/// An order as a decision needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrmOrder {
    pub id: CrmId,
    pub number: String,
    pub status: String,
    pub manager_id: Option<CrmId>,
    /// `Y-m-d H:i:s`.
    pub created_at: String,
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

/// A confirmed delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivered {
    pub status: u16,
    /// What the CRM said worth keeping (e.g. extension codes it does not know).
    pub note: Option<String>,
    /// What later actions of the call need (`{"id": N}` of a created record).
    pub result: Option<serde_json::Value>,
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum CrmError {
    /// No HTTP answer: connection refused, reset, timed out.
    #[error("CRM not reachable: {0}")]
    Transport(String),
    /// The CRM answered and said no (`success: false`, or an error status).
    #[error("CRM answered HTTP {status}: {message}")]
    Rejected {
        status: u16,
        message: String,
        retry_after: Option<Duration>,
    },
    /// The CRM answered with something that is not API JSON (a proxy's HTML page, …).
    #[error("CRM answered HTTP {status} with a body that is not API JSON: {snippet}")]
    BadBody { status: u16, snippet: String },
}

impl CrmError {
    pub fn status(&self) -> Option<u16> {
        match self {
            CrmError::Transport(_) => None,
            CrmError::Rejected { status, .. } | CrmError::BadBody { status, .. } => Some(*status),
        }
    }

    /// Whether the same request may succeed later: network trouble, rate limits and
    /// server-side failures. Validation errors and bad keys will not fix themselves.
    pub fn is_transient(&self) -> bool {
        match self.status() {
            None => true,
            Some(s) => s == 429 || s == 408 || s >= 500,
        }
    }

    /// How long the CRM asked us to wait (`Retry-After`).
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            CrmError::Rejected { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}
