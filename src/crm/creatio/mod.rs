//! Creatio (and BPMSoft, its fork with the same APIs) as callbridge's CRM, through OData 4
//! (docs/creatio.md). The matrix's records map onto Creatio's: a client is a `Contact`
//! (found through its `ContactCommunication`s), an order a `Case`, a task an `Activity`,
//! the call in the history a `Call`, a missed call's case a `QueueItem` in the operators'
//! queue. Creatio has no pop-up API: pop-ups are left to callbridge's operator panel.
//!
//! `session` logs in (forms or OAuth 2.0), `odata` makes the requests, `reads` finds the
//! caller and what a decision needs, `writes` carries out actions exactly once (each
//! record made is found again when in doubt), `lookups` holds Creatio's fixed ids and
//! the ones looked up by name.

mod lookups;
mod odata;
mod reads;
mod records;
mod session;
mod writes;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;

use crate::actions::CrmAction;
use crate::config::{CreatioConfig, CrmConfig, CrmKind};
use crate::crm::rate::RateLimiter;
use crate::crm::{
    Crm, CrmCustomer, CrmError, CrmOrder, Delivered, ExtensionCodes, Reach, Registered,
};
use crate::ids::CrmId;
use crate::phone::{PhoneNormalizer, PhoneNumber};

use session::{Login, Session};

/// A value looked up by name: (entity, name).
type LookupKey = (&'static str, String);

/// The Creatio adapter. Cheap to clone: every clone shares the session, the limiter,
/// the caches and the reach.
#[derive(Debug, Clone)]
pub struct CreatioCrm {
    http: reqwest::Client,
    /// The application root, without a trailing slash.
    base: String,
    /// `/0/odata` or `/odata`.
    odata_path: String,
    session: Arc<Session>,
    limit: RateLimiter,
    settings: Arc<CreatioConfig>,
    /// Reads the numbers Creatio holds (`[crm] default_region`).
    normalizer: Arc<PhoneNormalizer>,
    /// Ids looked up by name (`CaseOrigin` "Call", the queue, …): read once.
    looked_up: Arc<Mutex<HashMap<LookupKey, Option<CrmId>>>>,
    /// How the last request went, for `/health`.
    reach: Arc<Mutex<Reach>>,
    /// "creatio" or "bpmsoft", for logs.
    flavour: CrmKind,
    /// The installation answered `$batch` with a refusal: requests go one by one.
    batch_refused: Arc<std::sync::atomic::AtomicBool>,
}

impl CreatioCrm {
    pub fn new(config: &CrmConfig, settings: &CreatioConfig) -> Result<Self, CrmError> {
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout.min(Duration::from_secs(5)))
            .build()
            .map_err(|e| CrmError::Transport(e.to_string()))?;
        let login = match (&config.login, &config.password, &config.client_id, &config.client_secret) {
            (Some(user), Some(password), _, _) => Login::Forms {
                user: user.clone(),
                password: password.clone(),
            },
            (_, _, Some(client_id), Some(secret)) => Login::OAuth {
                client_id: client_id.clone(),
                secret: secret.clone(),
                token_url: format!(
                    "{}/connect/token",
                    config.identity_url.as_deref().unwrap_or(&config.url)
                ),
            },
            _ => {
                return Err(CrmError::Rejected {
                    status: 401,
                    message: "Creatio needs crm.login and crm.password, or crm.client_id and crm.client_secret".into(),
                    retry_after: None,
                })
            }
        };
        Ok(CreatioCrm {
            http,
            base: config.url.clone(),
            odata_path: config.odata_path.clone(),
            session: Arc::new(Session::new(login, &config.url)),
            limit: RateLimiter::new(config.rate_limit_per_sec),
            settings: Arc::new(settings.clone()),
            normalizer: Arc::new(
                PhoneNormalizer::new(&config.default_region)
                    .map_err(|e| CrmError::Transport(format!("crm.default_region: {e}")))?,
            ),
            looked_up: Arc::default(),
            reach: Arc::default(),
            flavour: config.kind,
            batch_refused: Arc::default(),
        })
    }

    pub fn reach(&self) -> Reach {
        self.reach
            .lock()
            .map(|r| r.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }

    fn answered(&self, error: Option<String>) {
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
}

impl Crm for CreatioCrm {
    fn send<'a>(
        &'a self,
        action: &'a CrmAction,
        in_doubt: bool,
    ) -> BoxFuture<'a, Result<Delivered, CrmError>> {
        Box::pin(CreatioCrm::send(self, action, in_doubt))
    }

    fn customers_by_phone<'a>(
        &'a self,
        phone: &'a PhoneNumber,
        normalizer: &'a PhoneNormalizer,
    ) -> BoxFuture<'a, Result<Vec<CrmCustomer>, CrmError>> {
        Box::pin(CreatioCrm::contacts_by_phone(self, phone, normalizer))
    }

    fn orders_of(&self, customer_id: CrmId) -> BoxFuture<'_, Result<Vec<CrmOrder>, CrmError>> {
        Box::pin(CreatioCrm::cases_of(self, customer_id))
    }

    fn closed_statuses(&self) -> BoxFuture<'_, Result<HashMap<String, bool>, CrmError>> {
        Box::pin(CreatioCrm::final_case_statuses(self))
    }

    fn active_managers(&self) -> BoxFuture<'_, Result<Vec<CrmId>, CrmError>> {
        Box::pin(CreatioCrm::employee_contacts(self))
    }

    fn extension_codes<'a>(
        &'a self,
        _module: &'a str,
    ) -> BoxFuture<'a, Result<Option<ExtensionCodes>, CrmError>> {
        Box::pin(async move { self.telephony_extensions().await.map(Some) })
    }

    fn register<'a>(
        &'a self,
        _module: &'a str,
        _base_url: &'a str,
        _codes: &'a BTreeMap<String, CrmId>,
    ) -> BoxFuture<'a, Result<Registered, CrmError>> {
        // Creatio has no telephony module to register: its users' extensions are read
        // from their telephony settings instead.
        Box::pin(async { Ok(Registered::default()) })
    }

    fn reach(&self) -> Reach {
        CreatioCrm::reach(self)
    }
}
