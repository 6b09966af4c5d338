//! The CRM side: what a delivery attempt can end in, and the CRM adapters (retailCRM API
//! v5 first). Adapters turn `CrmAction`s into the CRM's own requests and its answers into
//! `Delivered` or a typed `CrmError` that says whether trying again can help.

pub mod rate;
pub mod reads;
pub mod registration;
pub mod retailcrm;

use std::time::Duration;

pub use retailcrm::RetailCrm;

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
