//! The checked configuration as the daemon uses it: the [`Config`] tree, one struct per
//! section of `callbridge.toml`, the PBX, CRM and log kinds, and [`Secret`], which keeps
//! passwords and keys out of every printout.

use super::problems::ConfigProblem;
use crate::call::{CampaignVariables, ExtensionRange};
use crate::ids::CrmId;
use crate::matrix::CreateOn;
use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// A password or key. `Debug` and `Display` print `***`; use [`Secret::expose`] where
/// the real value must be sent.
#[derive(Clone, Default)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The real value, for the one place that sends it (AMI login, CRM request, HMAC).
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// The whole, checked configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub store: StoreConfig,
    pub http: HttpConfig,
    pub pbx: Vec<PbxConfig>,
    pub crm: CrmConfig,
    /// `[creatio]`: how calls become Creatio's records (read when `crm.kind` is Creatio).
    pub creatio: CreatioConfig,
    pub employees: EmployeesConfig,
    pub matrix: MatrixConfig,
    /// `[panel]`: the operators' web panel.
    pub panel: PanelConfig,
    pub log: LogConfig,
    pub daemon: DaemonConfig,
    /// Things that are accepted but probably not meant: unknown keys, placeholder secrets.
    pub warnings: Vec<ConfigProblem>,
}

#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// sqlx database URL, `sqlite://…` for now.
    pub url: String,
}

#[derive(Debug, Clone)]
pub struct HttpConfig {
    pub listen: SocketAddr,
    /// How the CRM reaches us, without a trailing slash.
    pub public_url: String,
    pub link_secret: Secret,
    /// How long a recording link the CRM gets stays valid (`[http] link_ttl`).
    pub link_ttl: Duration,
    /// How long after a call's end a link whose file is not written yet waits for it
    /// (`[http] recording_wait`): the link answers once the file is there.
    pub recording_wait: Duration,
}

#[derive(Debug, Clone)]
pub struct PbxConfig {
    pub name: String,
    pub kind: PbxKind,
    pub host: String,
    pub port: u16,
    pub username: String,
    pub secret: Secret,
    pub recordings_dir: PathBuf,
    pub ping_interval: Duration,
    pub ping_timeout: Duration,
    pub connect_timeout: Duration,
    pub reconnect_max_delay: Duration,
    /// Employee extensions (`["100-199", "2001"]`); empty = mapped extensions plus any
    /// 2-6 digit endpoint.
    pub internal_extensions: Vec<ExtensionRange>,
    /// Dialplan contexts where calls from outside arrive (`["from-trunk"]`).
    pub trunk_contexts: Vec<String>,
    /// Asterisk's voicemail spool (`<dir>/<context>/<mailbox>/INBOX/msgNNNN.<fmt>`).
    pub voicemail_dir: PathBuf,
    /// A call with no event for this long is ended (memory stays bounded).
    pub stale_call_timeout: Duration,
    /// How often the calls in progress are compared with the PBX's own list.
    pub resync_interval: Duration,
    /// Channel variables carrying the caller's campaign (UTM) data.
    pub campaign_variables: CampaignVariables,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PbxKind {
    /// Asterisk through the Manager Interface (AMI).
    Asterisk,
    /// FreeSWITCH through the Event Socket (mod_event_socket, inbound mode).
    FreeSwitch,
}

impl PbxKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PbxKind::Asterisk => "asterisk",
            PbxKind::FreeSwitch => "freeswitch",
        }
    }
}

impl fmt::Display for PbxKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone)]
pub struct CrmConfig {
    pub kind: CrmKind,
    /// Base URL of the CRM account (Creatio: the application root), without a trailing
    /// slash.
    pub url: String,
    /// retailCRM's API key (empty for Creatio).
    pub api_key: Secret,
    /// Creatio's forms login (`AuthService.svc/Login`): user name and password.
    pub login: Option<String>,
    pub password: Option<Secret>,
    /// Creatio's OAuth 2.0 client credentials, and the Identity Service that issues
    /// their tokens (`{identity_url}/connect/token`).
    pub client_id: Option<String>,
    pub client_secret: Option<Secret>,
    pub identity_url: Option<String>,
    /// Where Creatio's OData 4 lives under `url`: `/0/odata`, or `/odata` on .NET 8.
    pub odata_path: String,
    /// retailCRM site code, if the account has several sites.
    pub site: Option<String>,
    /// Limit for one CRM request.
    pub timeout: Duration,
    /// Requests per second to the CRM, shared by all delivery workers.
    pub rate_limit_per_sec: f64,
    /// Requests per second to the CRM's telephony methods (`/telephony/*`), which
    /// retailCRM limits separately.
    pub telephony_rate_limit_per_sec: f64,
    /// An action still undelivered this long after it was made is dead-lettered.
    pub give_up_after: Duration,
    /// Calls whose actions are delivered at the same time.
    pub concurrency: usize,
    /// Region (ISO 3166 code) in which numbers without a country code are read.
    pub default_region: String,
    /// `orderMethod` of the orders made for calls.
    pub order_method: String,
    /// Status groups whose orders are closed; an order in any other group is open.
    pub final_status_groups: Vec<String>,
    /// The telephony integration module's code; when set, callbridge registers it at
    /// start-up and reads the extension codes the CRM holds from it.
    pub module_code: Option<String>,
    /// How often the CRM's users, extension codes and order statuses are read again.
    pub directory_refresh: Duration,
}

/// `[creatio]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreatioConfig {
    /// How many trailing digits Creatio's `SearchNumber` compares (its system setting
    /// `SearchNumberLength`); callbridge then compares the full numbers itself.
    pub search_number_length: usize,
    /// The `CaseOrigin` of the cases made for calls, by `Name`.
    pub case_origin: String,
    /// The `CaseCategory` of those cases, by `Name`.
    pub case_category: String,
    /// The `Queue` (by `Name`) that missed calls are put into for the operators; `None`:
    /// no queue items.
    pub missed_calls_queue: Option<String>,
}

impl Default for CreatioConfig {
    fn default() -> Self {
        CreatioConfig {
            search_number_length: 7,
            case_origin: "Call".into(),
            case_category: "Service request".into(),
            missed_calls_queue: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrmKind {
    RetailCrm,
    /// Creatio, and BPMSoft (its fork, with the same APIs).
    Creatio,
    BpmSoft,
}

impl CrmKind {
    pub fn as_str(self) -> &'static str {
        match self {
            CrmKind::RetailCrm => "retailcrm",
            CrmKind::Creatio => "creatio",
            CrmKind::BpmSoft => "bpmsoft",
        }
    }
}

impl fmt::Display for CrmKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Default)]
pub struct EmployeesConfig {
    /// CRM user ids of senior managers.
    pub senior: Vec<CrmId>,
    /// Extension number (as written, e.g. "101") → CRM user id.
    pub extensions: BTreeMap<String, CrmId>,
}

#[derive(Debug, Clone)]
pub struct MatrixConfig {
    pub create_on: CreateOn,
}

#[derive(Debug, Clone)]
pub struct LogConfig {
    /// A tracing `EnvFilter` directive; `RUST_LOG` wins when set.
    pub level: String,
    pub format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

impl LogFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        }
    }
}

impl fmt::Display for LogFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone)]
pub struct DaemonConfig {
    /// How long in-flight CRM requests may finish after SIGTERM.
    pub shutdown_grace: Duration,
}

/// `[panel]`.
#[derive(Debug, Clone, Default)]
pub struct PanelConfig {
    /// Serve `/panel` (each employee's calls, live) on `[http] listen`.
    pub enabled: bool,
}
