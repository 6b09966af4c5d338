//! retailCRM API v5 client: the requests callbridge makes, with the API's encoding (form
//! fields holding JSON, `X-API-KEY` header) and its answers turned into `Delivered` /
//! `CrmError`. Request shapes follow `retailcrm/api-client-php` (models
//! `Telephony/CallEvent`, `Telephony/Call`, `Customers/Customer`, `Orders/Order`,
//! `Tasks/Task`) and the notes in `docs/retailcrm.md`.
//!
//! Exactly once as the CRM sees it (docs/delivery.md): customers and orders carry an
//! externalId derived from the call, so an attempt "in doubt" (an earlier one may have
//! worked) first looks the record up by externalId, and a create refused because the
//! externalId exists is the earlier attempt's record; a task carries a marker in its
//! commentary that a lookup finds; calls in the history are deduplicated by their
//! externalId by retailCRM itself; manager changes set a value and repeat harmlessly.
//! Every request first takes a token from the shared rate limiter.

mod answers;
mod bodies;
mod reads;
mod registration;
mod writes;

use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderValue, RETRY_AFTER};
use serde_json::Value;

use crate::config::{CrmConfig, Secret};
use crate::crm::rate::RateLimiter;
use std::collections::{BTreeMap, HashMap};

use futures::future::BoxFuture;

use crate::actions::CrmAction;
use crate::crm::{Crm, CrmCustomer, CrmError, CrmOrder, Delivered, ExtensionCodes, Reach};
use crate::ids::CrmId;
use crate::phone::{PhoneNormalizer, PhoneNumber};

pub use answers::interpret;
pub use registration::Registered;

#[derive(Debug, Clone)]
pub struct RetailCrm {
    http: reqwest::Client,
    /// `https://example.retailcrm.ru`, without a trailing slash.
    base: String,
    api_key: Secret,
    site: Option<String>,
    /// Shared by every clone: all workers together stay under the key's limit.
    limit: RateLimiter,
    telephony_limit: RateLimiter,
    /// Status groups whose orders are closed (`[crm] final_status_groups`).
    final_groups: std::sync::Arc<Vec<String>>,
    /// How the last request went, for `/health` (shared by every clone).
    reach: std::sync::Arc<std::sync::Mutex<Reach>>,
}

const TELEPHONY: &str = "/api/v5/telephony/";

impl RetailCrm {
    pub fn new(config: &CrmConfig) -> Result<Self, CrmError> {
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout.min(Duration::from_secs(5)))
            .user_agent(concat!("callbridge/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| CrmError::Transport(format!("HTTP client: {e}")))?;
        Ok(RetailCrm {
            http,
            base: config.url.trim_end_matches('/').to_string(),
            api_key: config.api_key.clone(),
            site: config.site.clone(),
            limit: RateLimiter::new(config.rate_limit_per_sec),
            telephony_limit: RateLimiter::new(config.telephony_rate_limit_per_sec),
            final_groups: std::sync::Arc::new(config.final_status_groups.clone()),
            reach: Default::default(),
        })
    }

    /// Whether the CRM answered its last request (for `/health`).
    pub fn reach(&self) -> Reach {
        self.reach
            .lock()
            .map(|r| r.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }

    pub(super) fn answered(&self, error: Option<String>) {
        let mut reach = self.reach.lock().unwrap_or_else(|p| p.into_inner());
        match error {
            None => {
                reach.reachable = Some(true);
                reach.last_answer_at = Some(chrono::Utc::now().to_rfc3339());
            }
            Some(e) => {
                reach.reachable = Some(false);
                reach.last_error = Some(e);
            }
        }
    }

    /// Waits for the rate limiter that governs `path`: telephony methods have their own
    /// budget instead of the key's general one (as in the official Go client's `rate.go`).
    pub(super) async fn pace(&self, path: &str) {
        if path.starts_with(TELEPHONY) {
            self.telephony_limit.acquire().await;
        } else {
            self.limit.acquire().await;
        }
    }

    /// GETs with query parameters, returns the HTTP status and the `success: true` body.
    pub(crate) async fn get(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<(u16, Value), CrmError> {
        self.pace(path).await;
        let url = format!("{}{}", self.base, path);
        let request = self
            .http
            .get(&url)
            .header("X-API-KEY", self.api_key.expose())
            .query(query);
        self.finish(path, request).await
    }

    /// [`Self::post_form`] for the other modules of the CRM side.
    pub(crate) async fn post_form_fields(
        &self,
        path: &str,
        fields: &[(&str, String)],
    ) -> Result<(u16, Value), CrmError> {
        self.post_form(path, fields).await
    }

    /// POSTs form fields, returns the HTTP status and the parsed `success: true` body.
    pub(super) async fn post_form(
        &self,
        path: &str,
        fields: &[(&str, String)],
    ) -> Result<(u16, Value), CrmError> {
        self.pace(path).await;
        let url = format!("{}{}", self.base, path);
        let request = self
            .http
            .post(&url)
            .header("X-API-KEY", self.api_key.expose())
            .form(fields);
        self.finish(path, request).await
    }

    pub(super) async fn finish(
        &self,
        path: &str,
        request: reqwest::RequestBuilder,
    ) -> Result<(u16, Value), CrmError> {
        let response = match request.send().await {
            Ok(response) => response,
            Err(e) => {
                crate::ops::metrics::crm_request(path, None);
                let text = transport_text(&e);
                self.answered(Some(text.clone()));
                return Err(CrmError::Transport(text));
            }
        };
        let status = response.status().as_u16();
        crate::ops::metrics::crm_request(path, Some(status));
        self.answered(None);
        let retry_after = retry_after(response.headers());
        let text = response
            .text()
            .await
            .map_err(|e| CrmError::Transport(transport_text(&e)))?;
        interpret(status, retry_after, &text)
    }
}

pub(super) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let v: &HeaderValue = headers.get(RETRY_AFTER)?;
    let secs: u64 = v.to_str().ok()?.trim().parse().ok()?;
    Some(Duration::from_secs(secs.min(3600)))
}

/// reqwest's error text without the chain noise; it never holds the API key, which
/// travels in a header.
pub(super) fn transport_text(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else {
        "request failed"
    };
    let mut text = format!("{kind}: {e}");
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(&format!(": {s}"));
        source = s.source();
    }
    text
}

/// An id or externalId as one URL path segment.
pub(super) fn path_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl Crm for RetailCrm {
    fn send<'a>(
        &'a self,
        action: &'a CrmAction,
        in_doubt: bool,
    ) -> BoxFuture<'a, Result<Delivered, CrmError>> {
        Box::pin(RetailCrm::send(self, action, in_doubt))
    }

    fn customers_by_phone<'a>(
        &'a self,
        phone: &'a PhoneNumber,
        normalizer: &'a PhoneNormalizer,
    ) -> BoxFuture<'a, Result<Vec<CrmCustomer>, CrmError>> {
        Box::pin(RetailCrm::customers_by_phone(self, phone, normalizer))
    }

    fn orders_of(&self, customer_id: CrmId) -> BoxFuture<'_, Result<Vec<CrmOrder>, CrmError>> {
        Box::pin(RetailCrm::orders_of(self, customer_id))
    }

    fn closed_statuses(&self) -> BoxFuture<'_, Result<HashMap<String, bool>, CrmError>> {
        Box::pin(async move {
            let groups = RetailCrm::status_groups(self).await?;
            Ok(groups
                .into_iter()
                .map(|(status, group)| {
                    let closed = self.final_groups.contains(&group);
                    (status, closed)
                })
                .collect())
        })
    }

    fn active_managers(&self) -> BoxFuture<'_, Result<Vec<CrmId>, CrmError>> {
        Box::pin(RetailCrm::active_managers(self))
    }

    fn extension_codes<'a>(
        &'a self,
        module: &'a str,
    ) -> BoxFuture<'a, Result<Option<ExtensionCodes>, CrmError>> {
        Box::pin(async move {
            if module.is_empty() {
                // No telephony module configured: no codes to read.
                return Ok(None);
            }
            RetailCrm::module_codes(self, module).await
        })
    }

    fn register<'a>(
        &'a self,
        module: &'a str,
        base_url: &'a str,
        codes: &'a BTreeMap<String, CrmId>,
    ) -> BoxFuture<'a, Result<Registered, CrmError>> {
        Box::pin(RetailCrm::register_module(self, module, base_url, codes))
    }

    fn reach(&self) -> Reach {
        RetailCrm::reach(self)
    }
}
