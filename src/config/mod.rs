//! Configuration of the callbridge daemon: what `callbridge.toml` may contain, how
//! `CALLBRIDGE__…` environment variables override it, and how the result is checked.
//!
//! Layering is done by the `config` crate: the TOML file first, then one override per
//! environment variable (`CALLBRIDGE__CRM__API_KEY`, `CALLBRIDGE__PBX__0__SECRET`,
//! `CALLBRIDGE__EMPLOYEES__EXTENSIONS__101=3`, `CALLBRIDGE__EMPLOYEES__SENIOR=7,8`).
//! Section and key names from the environment are lower-cased; extension numbers keep
//! their case. Environment values are strings, so numbers may be given as strings, and
//! an empty value counts as "not set" (for an extension: not mapped).
//!
//! The merged tree is then walked key by key with small typed readers. Every problem is
//! collected with the key it concerns (`pbx[0].port: expected …`), so `check-config`
//! shows all of them at once; unknown keys are returned as warnings so a typo is visible.
//! Secrets are wrapped in [`Secret`] and never appear in a problem, a warning, `Debug`
//! output or [`Config::summary`].
//!
//! The documented example for administrators is `conf/callbridge.toml`.

use crate::call::{CampaignVariables, ExtensionRange};
use crate::matrix::CreateOn;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Map, Value};

/// Environment variables starting with this prefix override keys of the file.
pub const ENV_PREFIX: &str = "CALLBRIDGE__";
const ENV_SEPARATOR: &str = "__";
/// Largest array index an environment variable may name (a typo such as
/// `CALLBRIDGE__PBX__99999999__SECRET` must not allocate a huge array).
const MAX_ENV_INDEX: usize = 999;

pub const DEFAULT_STORE_URL: &str = "sqlite://callbridge.db";
pub const DEFAULT_HTTP_PORT: u16 = 8089;
pub const DEFAULT_AMI_PORT: u16 = 5038;
/// mod_event_socket's default `listen-port`.
pub const DEFAULT_ESL_PORT: u16 = 8021;
pub const DEFAULT_RECORDINGS_DIR: &str = "/var/spool/asterisk/monitor";
/// FreeSWITCH's `$${recordings_dir}` in a source install (packages: /var/lib/freeswitch).
pub const DEFAULT_FS_RECORDINGS_DIR: &str = "/usr/local/freeswitch/recordings";
/// FreeSWITCH's voicemail storage (`<dir>/<profile>/<domain>/<id>/msg_<uuid>.wav`).
pub const DEFAULT_FS_VOICEMAIL_DIR: &str = "/usr/local/freeswitch/storage/voicemail";
pub const DEFAULT_PING_INTERVAL: Duration = Duration::from_secs(20);
pub const DEFAULT_PING_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
pub const DEFAULT_RECONNECT_MAX_DELAY: Duration = Duration::from_secs(30);
pub const DEFAULT_VOICEMAIL_DIR: &str = "/var/spool/asterisk/voicemail";
pub const DEFAULT_STALE_CALL_TIMEOUT: Duration = Duration::from_secs(6 * 3600);
pub const DEFAULT_RESYNC_INTERVAL: Duration = Duration::from_secs(300);
/// Recording links stay valid 90 days: long enough for the call's follow-up.
pub const DEFAULT_LINK_TTL: Duration = Duration::from_secs(90 * 86_400);
/// How long after a call ended a recording that is not (completely) on disk yet is
/// waited for: MixMonitor closing its file, a post-processing step converting it.
pub const DEFAULT_RECORDING_WAIT: Duration = Duration::from_secs(120);
pub const DEFAULT_CRM_TIMEOUT: Duration = Duration::from_secs(10);
/// retailCRM's published limit per API key: 10 requests/s, 40/s for `/telephony*`
/// (the official Go client's `rate.go`; see docs/retailcrm.md).
pub const DEFAULT_CRM_RATE_LIMIT: f64 = 10.0;
pub const DEFAULT_CRM_TELEPHONY_RATE_LIMIT: f64 = 40.0;
pub const DEFAULT_GIVE_UP_AFTER: Duration = Duration::from_secs(24 * 3600);
/// Requests in flight at most: with a CRM answering in 30 ms, 64 carry ~2,000 requests/s (an
/// office of ~250 calls/s); under retailCRM's own rate limit the limiter, not this, sets the pace.
pub const DEFAULT_CRM_CONCURRENCY: usize = 64;
/// How often the CRM's users, extension codes and statuses are read again.
pub const DEFAULT_DIRECTORY_REFRESH: Duration = Duration::from_secs(300);
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
pub const DEFAULT_LOG_LEVEL: &str = "info";

/// Secret values copied from the example file unchanged.
const PLACEHOLDERS: &[&str] = &["...", "change-me", "changeme"];

/// The default `[http] listen` address, 127.0.0.1:8089.
pub fn default_http_listen() -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, DEFAULT_HTTP_PORT))
}

// ---------------------------------------------------------------------------------------
// Types
// ---------------------------------------------------------------------------------------

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
    pub employees: EmployeesConfig,
    pub matrix: MatrixConfig,
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
    /// Base URL of the CRM account, without a trailing slash.
    pub url: String,
    pub api_key: Secret,
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrmKind {
    RetailCrm,
}

impl CrmKind {
    pub fn as_str(self) -> &'static str {
        match self {
            CrmKind::RetailCrm => "retailcrm",
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
    pub senior: Vec<u64>,
    /// Extension number (as written, e.g. "101") → CRM user id.
    pub extensions: BTreeMap<String, u64>,
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

/// One problem (or warning) about one key, shown as `"{key}: {message}"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    pub key: String,
    pub message: String,
}

impl ConfigProblem {
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigProblem {
            key: key.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

/// Every problem found; `Display` prints one line per problem.
#[derive(Debug, Clone)]
pub struct ConfigErrors(pub Vec<ConfigProblem>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, problem) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{problem}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl ConfigErrors {
    fn one(key: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigErrors(vec![ConfigProblem::new(key, message)])
    }
}

// ---------------------------------------------------------------------------------------
// Loading
// ---------------------------------------------------------------------------------------

/// Reads the file at `path` and applies the `CALLBRIDGE__…` variables of this process.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    let mut env = Vec::new();
    let mut not_unicode = Vec::new();
    for (name, value) in std::env::vars_os() {
        let Some(name) = name.to_str() else { continue };
        if !name.starts_with(ENV_PREFIX) {
            continue;
        }
        match value.into_string() {
            Ok(value) => env.push((name.to_string(), value)),
            Err(_) => not_unicode.push(ConfigProblem::new(name, "value is not valid UTF-8")),
        }
    }
    match (load_with_env(path, env), not_unicode.is_empty()) {
        (result, true) => result,
        (Ok(_), false) => Err(ConfigErrors(not_unicode)),
        (Err(ConfigErrors(rest)), false) => {
            not_unicode.extend(rest);
            Err(ConfigErrors(not_unicode))
        }
    }
}

/// Reads the file at `path` and applies the given environment (only `CALLBRIDGE__…`
/// entries are used; others are ignored).
pub fn load_with_env(
    path: &Path,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Config, ConfigErrors> {
    let origin = format!("{:?}", path.display().to_string());
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigErrors::one("config", format!("cannot read {origin}: {e}")))?;
    build(&text, &origin, env)
}

/// Only `[store] url` of a configuration file (with `CALLBRIDGE__STORE__URL` over it), for
/// the commands that work on the store beside a running daemon (`callbridge outbox`):
/// they must not fail on a PBX secret that only the daemon's environment holds.
pub fn load_store_url(path: &Path) -> Result<String, ConfigErrors> {
    let origin = format!("{:?}", path.display().to_string());
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigErrors::one("config", format!("cannot read {origin}: {e}")))?;
    let table = toml::from_str::<toml::Table>(&text)
        .map_err(|e| ConfigErrors::one("config", toml_error(&text, &origin, &e)))?;
    let from_file = table
        .get("store")
        .and_then(|s| s.get("url"))
        .and_then(|u| u.as_str())
        .map(str::to_string);
    let url = std::env::var("CALLBRIDGE__STORE__URL")
        .ok()
        .or(from_file)
        .unwrap_or_else(|| DEFAULT_STORE_URL.to_string());
    let mut ck = Checker {
        problems: Vec::new(),
        warnings: Vec::new(),
        env: &[],
    };
    check_store_url(&mut ck, "store.url", &url);
    if ck.problems.is_empty() {
        Ok(url)
    } else {
        Err(ConfigErrors(ck.problems))
    }
}

/// Parses TOML text without any environment overrides.
pub fn from_toml_str(text: &str) -> Result<Config, ConfigErrors> {
    build(text, "the configuration", std::iter::empty())
}

fn build(
    text: &str,
    origin: &str,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Config, ConfigErrors> {
    // The config crate's own parse error quotes the offending line, which may hold a
    // secret; toml's bare message and position do not.
    if let Err(e) = toml::from_str::<toml::Table>(text) {
        return Err(ConfigErrors::one("config", toml_error(text, origin, &e)));
    }
    let (overrides, env_problems) = env_overrides(env);
    let mut builder = ::config::Config::builder()
        .add_source(::config::File::from_str(text, ::config::FileFormat::Toml));
    for o in &overrides {
        builder = builder
            .set_override(o.path.as_str(), o.value.clone())
            .map_err(|e| ConfigErrors::one(o.var.as_str(), format!("cannot be applied: {e}")))?;
    }
    let tree = builder
        .build()
        .and_then(|c| c.try_deserialize::<Value>())
        .map_err(|e| {
            let first = e.to_string().lines().next().unwrap_or_default().to_string();
            ConfigErrors::one("config", format!("{origin} cannot be read: {first}"))
        })?;
    check(&tree, &overrides, env_problems)
}

fn toml_error(text: &str, origin: &str, e: &toml::de::Error) -> String {
    let message = e
        .message()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ");
    match e.span() {
        Some(span) => {
            let before = text.get(..span.start).unwrap_or(text);
            let line = before.matches('\n').count() + 1;
            let column = before
                .rsplit('\n')
                .next()
                .unwrap_or_default()
                .chars()
                .count()
                + 1;
            format!("{origin} is not valid TOML: line {line}, column {column}: {message}")
        }
        None => format!("{origin} is not valid TOML: {message}"),
    }
}

/// One `CALLBRIDGE__…` variable turned into a config-crate path.
struct EnvOverride {
    var: String,
    /// Path for `set_override`, e.g. `pbx[0].secret`.
    path: String,
    /// The same key as shown in messages, e.g. `employees.extensions."101"`.
    key: String,
    value: String,
}

fn env_overrides(
    env: impl IntoIterator<Item = (String, String)>,
) -> (Vec<EnvOverride>, Vec<ConfigProblem>) {
    let mut overrides = Vec::new();
    let mut problems = Vec::new();
    for (var, value) in env {
        let Some(rest) = var.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        match env_path(rest) {
            Ok((path, key)) => overrides.push(EnvOverride {
                var,
                path,
                key,
                value,
            }),
            Err(message) => problems.push(ConfigProblem::new(var, message)),
        }
    }
    overrides.sort_by(|a, b| a.var.cmp(&b.var));
    problems.sort_by(|a, b| a.key.cmp(&b.key));
    (overrides, problems)
}

/// `PBX__0__SECRET` → (`pbx[0].secret`, `pbx[0].secret`);
/// `EMPLOYEES__EXTENSIONS__101` → (`employees.extensions.101`, `employees.extensions."101"`).
fn env_path(rest: &str) -> Result<(String, String), String> {
    let segments: Vec<&str> = rest.split(ENV_SEPARATOR).collect();
    if segments.iter().any(|s| s.is_empty()) {
        return Err(format!(
            "not a valid override name; expected {ENV_PREFIX}SECTION__KEY, e.g. {ENV_PREFIX}CRM__API_KEY"
        ));
    }
    if let Some(bad) = segments.iter().find(|s| {
        !s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    }) {
        return Err(format!(
            "{bad:?} cannot be part of a key (use letters, digits, _ and -)"
        ));
    }
    // `segments[..at]` named the array; `segments[at]` must be its index.
    let index = |at: usize, what: &str| -> Result<usize, String> {
        let seg = segments[at];
        match seg.parse::<usize>() {
            Ok(i) if seg.chars().all(|c| c.is_ascii_digit()) && i <= MAX_ENV_INDEX => Ok(i),
            _ => Err(format!(
                "expected {what} index (0 for the first) after {ENV_PREFIX}{}, got {seg:?}",
                segments[..at].join(ENV_SEPARATOR)
            )),
        }
    };

    let section = segments[0].to_ascii_lowercase();
    let mut path = section.clone();
    let mut key = section.clone();
    let mut tail = &segments[1..];
    match section.as_str() {
        "pbx" => {
            let Some((_, more)) = tail.split_first() else {
                return Err(format!(
                    "names no [[pbx]] entry; use {ENV_PREFIX}PBX__0__KEY (0 = the first [[pbx]] section)"
                ));
            };
            let i = index(1, "a [[pbx]]")?;
            path.push_str(&format!("[{i}]"));
            key.push_str(&format!("[{i}]"));
            tail = more;
        }
        "employees" => {
            if let Some((first, more)) = tail.split_first() {
                let name = first.to_ascii_lowercase();
                path.push_str(&format!(".{name}"));
                key.push_str(&format!(".{name}"));
                tail = more;
                match (name.as_str(), tail.split_first()) {
                    ("extensions", Some((ext, more))) => {
                        // Map key: extension numbers/names keep their case.
                        path.push_str(&format!(".{ext}"));
                        key.push_str(&format!(".{ext:?}"));
                        tail = more;
                    }
                    ("senior", Some((_, more))) => {
                        let i = index(2, "a senior")?;
                        path.push_str(&format!("[{i}]"));
                        key.push_str(&format!("[{i}]"));
                        tail = more;
                    }
                    _ => {}
                }
            }
        }
        _ => {}
    }
    for seg in tail {
        let seg = seg.to_ascii_lowercase();
        path.push_str(&format!(".{seg}"));
        key.push_str(&format!(".{seg}"));
    }
    Ok((path, key))
}

// ---------------------------------------------------------------------------------------
// Checking
// ---------------------------------------------------------------------------------------

/// Collects problems and warnings while the tree is read.
struct Checker<'e> {
    problems: Vec<ConfigProblem>,
    warnings: Vec<ConfigProblem>,
    env: &'e [EnvOverride],
}

/// A key of a table as found: `value` is `None` when absent, null or blank.
struct Field<'a> {
    key: String,
    value: Option<&'a Value>,
    /// The table itself is missing or broken (already reported): don't also report
    /// its required keys as missing.
    quiet: bool,
}

/// A table being read; remembers the keys looked at so the others can be reported.
struct Table<'a> {
    path: String,
    map: Option<&'a Map<String, Value>>,
    known: Vec<&'static str>,
}

impl<'a> Table<'a> {
    fn new(path: impl Into<String>, map: Option<&'a Map<String, Value>>) -> Self {
        Table {
            path: path.into(),
            map,
            known: Vec::new(),
        }
    }

    fn child_key(&self, name: &str) -> String {
        if self.path.is_empty() {
            name.to_string()
        } else {
            format!("{}.{name}", self.path)
        }
    }

    fn field(&mut self, name: &'static str) -> Field<'a> {
        self.known.push(name);
        let value = self.map.and_then(|m| m.get(name)).filter(|v| !is_blank(v));
        Field {
            key: self.child_key(name),
            value,
            quiet: self.map.is_none(),
        }
    }

    /// Reports every key that was not looked at as an unknown-key warning.
    fn finish(self, ck: &mut Checker<'_>) {
        let Some(map) = self.map else { return };
        for name in map.keys() {
            if self.known.contains(&name.as_str()) {
                continue;
            }
            let lower = name.to_ascii_lowercase();
            let hint = self
                .known
                .iter()
                .find(|k| **k == lower)
                .map(|k| format!("; keys are lower-case: {k:?}"));
            ck.unknown_key(&self.child_key(name), hint);
        }
    }
}

fn is_blank(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::String(s) => s.trim().is_empty(),
        _ => false,
    }
}

/// The kind of a value, for messages that must not show the value itself.
fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_f64() => "a float",
        Value::Number(_) => "an integer",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "a table",
    }
}

/// A non-secret value as shown in a message: strings quoted, numbers as written.
fn describe(v: &Value) -> String {
    match v {
        Value::String(s) => format!("{s:?}"),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        other => type_name(other).to_string(),
    }
}

fn one_of(options: &[&str]) -> String {
    let quoted: Vec<String> = options.iter().map(|o| format!("{o:?}")).collect();
    match quoted.split_last() {
        None => String::new(),
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
    }
}

fn is_http_url(s: &str) -> bool {
    let lower = s.to_ascii_lowercase();
    let Some(rest) = lower
        .strip_prefix("https://")
        .or_else(|| lower.strip_prefix("http://"))
    else {
        return false;
    };
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    !host.is_empty() && !s.contains(char::is_whitespace)
}

fn is_placeholder(s: &str) -> bool {
    PLACEHOLDERS
        .iter()
        .any(|p| p.eq_ignore_ascii_case(s.trim()))
}

impl Checker<'_> {
    fn problem(&mut self, key: &str, message: impl Into<String>) {
        self.problems.push(ConfigProblem::new(key, message));
    }

    fn warn(&mut self, key: &str, message: impl Into<String>) {
        self.warnings.push(ConfigProblem::new(key, message));
    }

    fn missing(&mut self, f: &Field<'_>) {
        if !f.quiet {
            self.problem(&f.key, "missing");
        }
    }

    fn unknown_key(&mut self, key: &str, hint: Option<String>) {
        let from_env = self.env.iter().find(|o| {
            o.key == key
                || o.key.starts_with(&format!("{key}."))
                || o.key.starts_with(&format!("{key}["))
        });
        let mut message = match from_env {
            Some(o) => format!("unknown key (ignored; set by {})", o.var),
            None => "unknown key (ignored)".to_string(),
        };
        message.push_str(&hint.unwrap_or_default());
        self.warn(key, message);
    }

    /// A `[section]`; when absent or not a table, an empty one (defaults apply).
    fn section<'a>(&mut self, f: Field<'a>) -> Table<'a> {
        match f.value {
            Some(Value::Object(map)) => Table::new(f.key, Some(map)),
            None => Table::new(f.key, None),
            Some(other) => {
                let message = format!(
                    "expected a table ([{}] section), got {}",
                    f.key,
                    type_name(other)
                );
                self.problem(&f.key, message);
                Table::new(f.key, None)
            }
        }
    }

    fn string(&mut self, f: &Field<'_>) -> Option<String> {
        match f.value? {
            Value::String(s) => Some(s.trim().to_string()),
            other => {
                let message = format!("expected a string, got {}", type_name(other));
                self.problem(&f.key, message);
                None
            }
        }
    }

    /// A list of strings; from the environment, a comma list `a,b`.
    fn string_list(&mut self, f: &Field<'_>) -> Vec<String> {
        match f.value {
            None => Vec::new(),
            Some(Value::Array(items)) => items
                .iter()
                .enumerate()
                .filter_map(|(i, v)| match v {
                    Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
                    Value::Number(n) => Some(n.to_string()),
                    other => {
                        let message = format!("expected a string, got {}", type_name(other));
                        self.problem(&format!("{}[{i}]", f.key), message);
                        None
                    }
                })
                .collect(),
            Some(Value::String(s)) => s
                .split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(str::to_string)
                .collect(),
            Some(other) => {
                let message = format!("expected a list of strings, got {}", type_name(other));
                self.problem(&f.key, message);
                Vec::new()
            }
        }
    }

    fn required_string(&mut self, f: &Field<'_>) -> String {
        if f.value.is_none() {
            self.missing(f);
        }
        self.string(f).unwrap_or_default()
    }

    /// Never puts the value into a message: not when it has the wrong type either.
    fn secret(&mut self, f: &Field<'_>) -> Option<Secret> {
        match f.value? {
            Value::String(s) => {
                if is_placeholder(s) {
                    self.warn(
                        &f.key,
                        "looks like a placeholder from the example; set the real value",
                    );
                }
                Some(Secret(s.clone()))
            }
            other => {
                let message = format!("expected a string, got {}", type_name(other));
                self.problem(&f.key, message);
                None
            }
        }
    }

    fn required_secret(&mut self, f: &Field<'_>) -> Secret {
        if f.value.is_none() {
            self.missing(f);
        }
        self.secret(f).unwrap_or_default()
    }

    /// An integer within `min..=max`, given as a TOML integer or a string of digits.
    fn integer(&mut self, key: &str, v: &Value, min: u64, max: u64, expected: &str) -> Option<u64> {
        let n = match v {
            Value::Number(n) => n.as_u64(),
            Value::String(s) => s.trim().parse::<u64>().ok(),
            _ => None,
        };
        match n {
            Some(n) if (min..=max).contains(&n) => Some(n),
            _ => {
                self.problem(key, format!("{expected}, got {}", describe(v)));
                None
            }
        }
    }

    fn port(&mut self, f: &Field<'_>, default: u16) -> u16 {
        let Some(v) = f.value else { return default };
        self.integer(
            &f.key,
            v,
            1,
            u64::from(u16::MAX),
            "expected an integer between 1 and 65535",
        )
        .and_then(|n| u16::try_from(n).ok())
        .unwrap_or(default)
    }

    fn user_id(&mut self, key: &str, v: &Value) -> Option<u64> {
        self.integer(
            key,
            v,
            1,
            u64::MAX,
            "expected a CRM user id (positive integer)",
        )
    }

    /// A positive rate (requests per second), integer or decimal.
    fn rate(&mut self, f: &Field<'_>, default: f64) -> f64 {
        let Some(v) = f.value else { return default };
        let n = match v {
            Value::Number(n) => n.as_f64(),
            Value::String(s) => s.trim().parse::<f64>().ok(),
            _ => None,
        };
        match n {
            Some(n) if n.is_finite() && n > 0.0 && n <= 100_000.0 => n,
            _ => {
                self.problem(
                    &f.key,
                    format!(
                        "expected requests per second, a number above 0 like 10 or 2.5, got {}",
                        describe(v)
                    ),
                );
                default
            }
        }
    }

    fn duration(&mut self, f: &Field<'_>, default: Duration, allow_zero: bool) -> Duration {
        let Some(v) = f.value else { return default };
        let message = match v {
            Value::String(s) => match humantime::parse_duration(s.trim()) {
                Ok(d) if d.is_zero() && !allow_zero => {
                    format!("must be longer than zero, got {s:?}")
                }
                Ok(d) => return d,
                Err(_) => format!("expected a duration like \"20s\", \"5m\" or \"24h\", got {s:?}"),
            },
            Value::Number(n) => {
                format!("expected a duration with a unit like \"{n}s\", got the bare number {n}")
            }
            other => format!(
                "expected a duration like \"20s\", \"5m\" or \"24h\", got {}",
                type_name(other)
            ),
        };
        self.problem(&f.key, message);
        default
    }

    /// One of a few words (case-insensitive).
    fn choice<T: Copy>(&mut self, f: &Field<'_>, options: &[(&str, T)], default: T) -> T {
        let Some(s) = self.string(f) else {
            return default;
        };
        if let Some((_, value)) = options
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(&s))
        {
            return *value;
        }
        let names: Vec<&str> = options.iter().map(|(name, _)| *name).collect();
        self.problem(&f.key, format!("expected {}, got {s:?}", one_of(&names)));
        default
    }

    /// A required `kind`; `planned` are kinds that will come in a later version.
    fn kind<T: Copy>(
        &mut self,
        f: &Field<'_>,
        supported: &[(&str, T)],
        planned: &[&str],
        fallback: T,
    ) -> T {
        let s = self.required_string(f);
        if s.is_empty() {
            return fallback;
        }
        if let Some((_, value)) = supported.iter().find(|(n, _)| n.eq_ignore_ascii_case(&s)) {
            return *value;
        }
        let names: Vec<&str> = supported.iter().map(|(name, _)| *name).collect();
        let message = if planned.iter().any(|p| p.eq_ignore_ascii_case(&s)) {
            format!("{s:?} is not supported yet; expected {}", one_of(&names))
        } else {
            format!("unknown kind {s:?}; expected {}", one_of(&names))
        };
        self.problem(&f.key, message);
        fallback
    }
}

fn check(
    tree: &Value,
    env: &[EnvOverride],
    env_problems: Vec<ConfigProblem>,
) -> Result<Config, ConfigErrors> {
    let mut ck = Checker {
        problems: env_problems,
        warnings: Vec::new(),
        env,
    };
    let mut root = Table::new("", tree.as_object());
    let store = read_store(&mut ck, root.field("store"));
    let http = read_http(&mut ck, root.field("http"));
    let pbx = read_pbxs(&mut ck, root.field("pbx"));
    let crm = read_crm(&mut ck, root.field("crm"));
    let employees = read_employees(&mut ck, root.field("employees"));
    let matrix = read_matrix(&mut ck, root.field("matrix"));
    let log = read_log(&mut ck, root.field("log"));
    let daemon = read_daemon(&mut ck, root.field("daemon"));
    root.finish(&mut ck);

    if !ck.problems.is_empty() {
        return Err(ConfigErrors(ck.problems));
    }
    Ok(Config {
        store,
        http,
        pbx,
        crm,
        employees,
        matrix,
        log,
        daemon,
        warnings: ck.warnings,
    })
}

fn read_store(ck: &mut Checker<'_>, f: Field<'_>) -> StoreConfig {
    let mut t = ck.section(f);
    let f = t.field("url");
    let url = match ck.string(&f) {
        Some(url) => {
            check_store_url(ck, &f.key, &url);
            url
        }
        None => DEFAULT_STORE_URL.to_string(),
    };
    t.finish(ck);
    StoreConfig { url }
}

fn check_store_url(ck: &mut Checker<'_>, key: &str, url: &str) {
    let message = match url.split_once(':') {
        Some(("sqlite", _)) => return,
        Some(("postgres" | "postgresql", rest)) if rest.starts_with("//") => return,
        Some((scheme, rest)) if rest.starts_with("//") => {
            format!("unsupported scheme {scheme:?}; expected sqlite:// or postgres://")
        }
        _ => format!(
            "not a database URL {}; expected sqlite://FILE or postgres://USER@HOST/DB, e.g. {DEFAULT_STORE_URL:?}",
            redact_url_password(url)
        ),
    };
    ck.problem(key, message);
}

fn read_http(ck: &mut Checker<'_>, f: Field<'_>) -> HttpConfig {
    let mut t = ck.section(f);

    let f = t.field("listen");
    let listen = match ck.string(&f) {
        Some(s) => s.parse::<SocketAddr>().unwrap_or_else(|_| {
            ck.problem(
                &f.key,
                format!("not a socket address {s:?}; expected IP:PORT like \"127.0.0.1:8089\""),
            );
            default_http_listen()
        }),
        None => default_http_listen(),
    };

    let f = t.field("public_url");
    let public_url = match ck.string(&f) {
        Some(s) if is_http_url(&s) => s.trim_end_matches('/').to_string(),
        Some(s) => {
            ck.problem(&f.key, format!("not an http(s) URL: {s:?}"));
            s
        }
        None => {
            let url = format!("http://{listen}");
            if f.value.is_none() && listen.ip().is_unspecified() {
                ck.warn(
                    &f.key,
                    format!("not set, and the default {url:?} cannot be reached by the CRM; set the address the CRM should use"),
                );
            }
            url
        }
    };

    let f = t.field("link_secret");
    let link_secret = match ck.secret(&f) {
        Some(secret) => secret,
        None => {
            if f.value.is_none() {
                ck.warn(
                    &f.key,
                    "not set; recording links are signed with a random key and stop working when callbridge restarts (set a long random string)",
                );
            }
            Secret::default()
        }
    };
    let link_ttl = ck.duration(&t.field("link_ttl"), DEFAULT_LINK_TTL, false);
    let recording_wait = ck.duration(&t.field("recording_wait"), DEFAULT_RECORDING_WAIT, true);
    // Transcoding is not built: say so rather than serve another format than asked.
    let f = t.field("recording_format");
    if let Some(format) = ck.string(&f) {
        if format != "original" {
            ck.problem(
                &f.key,
                format!("{format:?} is not supported: recordings are served as the PBX wrote them (set the format in MixMonitor or record_session); remove the key or set \"original\""),
            );
        }
    }

    t.finish(ck);
    HttpConfig {
        listen,
        public_url,
        link_secret,
        link_ttl,
        recording_wait,
    }
}

fn read_pbxs(ck: &mut Checker<'_>, f: Field<'_>) -> Vec<PbxConfig> {
    let items = match f.value {
        Some(Value::Array(items)) if !items.is_empty() => items,
        None | Some(Value::Array(_)) => {
            ck.problem(&f.key, "missing; add at least one [[pbx]] section");
            return Vec::new();
        }
        Some(Value::Object(_)) => {
            ck.problem(
                &f.key,
                "expected [[pbx]] sections (an array of tables), got a table; write [[pbx]] with double brackets",
            );
            return Vec::new();
        }
        Some(other) => {
            let message = format!(
                "expected [[pbx]] sections (an array of tables), got {}",
                type_name(other)
            );
            ck.problem(&f.key, message);
            return Vec::new();
        }
    };

    let mut pbxs = Vec::new();
    let mut names = BTreeSet::new();
    for (i, item) in items.iter().enumerate() {
        let key = format!("{}[{i}]", f.key);
        match item {
            Value::Object(map) => {
                let pbx = read_pbx(ck, Table::new(key.as_str(), Some(map)));
                if !pbx.name.is_empty() && !names.insert(pbx.name.clone()) {
                    ck.problem(
                        &format!("{key}.name"),
                        format!("duplicate name {:?}", pbx.name),
                    );
                }
                pbxs.push(pbx);
            }
            Value::Null => ck.problem(
                &key,
                "missing; [[pbx]] sections are numbered from 0 in file order, without gaps",
            ),
            other => {
                let message = format!("expected a [[pbx]] table, got {}", type_name(other));
                ck.problem(&key, message);
            }
        }
    }
    pbxs
}

fn read_pbx(ck: &mut Checker<'_>, mut t: Table<'_>) -> PbxConfig {
    let name = ck.required_string(&t.field("name"));
    let kind = ck.kind(
        &t.field("kind"),
        &[
            ("asterisk", PbxKind::Asterisk),
            ("freeswitch", PbxKind::FreeSwitch),
        ],
        &[],
        PbxKind::Asterisk,
    );

    let f = t.field("host");
    let host = ck.required_string(&f);
    if host.contains("://") || host.contains('/') || host.contains(char::is_whitespace) {
        ck.problem(
            &f.key,
            format!("expected a host name or IP address, got {host:?}"),
        );
    } else if host.parse::<SocketAddr>().is_ok() {
        let port_key = t.child_key("port");
        ck.problem(
            &f.key,
            format!("expected a host name or IP address without a port, got {host:?}; put the port in {port_key}"),
        );
    }

    let port = ck.port(
        &t.field("port"),
        match kind {
            PbxKind::Asterisk => DEFAULT_AMI_PORT,
            PbxKind::FreeSwitch => DEFAULT_ESL_PORT,
        },
    );
    // The event socket knows only a password; an AMI login has a user name too.
    let username = match kind {
        PbxKind::Asterisk => ck.required_string(&t.field("username")),
        PbxKind::FreeSwitch => ck.string(&t.field("username")).unwrap_or_default(),
    };
    let secret = ck.required_secret(&t.field("secret"));
    let recordings_dir = ck
        .string(&t.field("recordings_dir"))
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(match kind {
                PbxKind::Asterisk => DEFAULT_RECORDINGS_DIR,
                PbxKind::FreeSwitch => DEFAULT_FS_RECORDINGS_DIR,
            })
        });
    let ping_interval = ck.duration(&t.field("ping_interval"), DEFAULT_PING_INTERVAL, false);
    let ping_timeout = ck.duration(&t.field("ping_timeout"), DEFAULT_PING_TIMEOUT, false);
    let connect_timeout = ck.duration(&t.field("connect_timeout"), DEFAULT_CONNECT_TIMEOUT, false);
    let reconnect_max_delay = ck.duration(
        &t.field("reconnect_max_delay"),
        DEFAULT_RECONNECT_MAX_DELAY,
        false,
    );
    let f = t.field("internal_extensions");
    let internal_extensions = ck
        .string_list(&f)
        .into_iter()
        .enumerate()
        .filter_map(|(i, item)| {
            let parsed = ExtensionRange::parse(&item);
            if parsed.is_none() {
                ck.problem(
                    &format!("{}[{i}]", f.key),
                    format!(
                        "expected an extension number or a range like \"100-199\", got {item:?}"
                    ),
                );
            }
            parsed
        })
        .collect();
    let trunk_contexts = ck.string_list(&t.field("trunk_contexts"));
    let voicemail_dir = ck
        .string(&t.field("voicemail_dir"))
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(match kind {
                PbxKind::Asterisk => DEFAULT_VOICEMAIL_DIR,
                PbxKind::FreeSwitch => DEFAULT_FS_VOICEMAIL_DIR,
            })
        });
    let stale_call_timeout = ck.duration(
        &t.field("stale_call_timeout"),
        DEFAULT_STALE_CALL_TIMEOUT,
        false,
    );
    let resync_interval = ck.duration(&t.field("resync_interval"), DEFAULT_RESYNC_INTERVAL, false);
    let campaign_variables = read_campaign_variables(ck, t.field("utm_variables"));
    t.finish(ck);

    PbxConfig {
        name,
        kind,
        host,
        port,
        username,
        secret,
        recordings_dir,
        ping_interval,
        ping_timeout,
        connect_timeout,
        reconnect_max_delay,
        internal_extensions,
        trunk_contexts,
        voicemail_dir,
        stale_call_timeout,
        resync_interval,
        campaign_variables,
    }
}

/// `utm_variables = { source = "UTM_SOURCE", medium = …, campaign = …, content = …,
/// term = … }`: the channel variables the dialplan puts campaign data in.
fn read_campaign_variables(ck: &mut Checker<'_>, f: Field<'_>) -> CampaignVariables {
    let mut t = ck.section(f);
    let defaults = CampaignVariables::default();
    // An empty name reads as not set: the default stays.
    let mut name = |ck: &mut Checker<'_>, key: &'static str, default: String| {
        ck.string(&t.field(key))
            .filter(|v| !v.is_empty())
            .unwrap_or(default)
    };
    let variables = CampaignVariables {
        source: name(ck, "source", defaults.source),
        medium: name(ck, "medium", defaults.medium),
        campaign: name(ck, "campaign", defaults.campaign),
        content: name(ck, "content", defaults.content),
        term: name(ck, "term", defaults.term),
    };
    t.finish(ck);
    variables
}

fn read_crm(ck: &mut Checker<'_>, f: Field<'_>) -> CrmConfig {
    if f.value.is_none() {
        ck.problem(
            &f.key,
            "missing; add a [crm] section with kind, url and api_key",
        );
    }
    let mut t = ck.section(f);
    let kind = ck.kind(
        &t.field("kind"),
        &[("retailcrm", CrmKind::RetailCrm)],
        &[],
        CrmKind::RetailCrm,
    );

    let f = t.field("url");
    let mut url = ck.required_string(&f);
    if !url.is_empty() {
        if !is_http_url(&url) {
            ck.problem(&f.key, format!("not an http(s) URL: {url:?}"));
        } else if url.contains('?') {
            // Don't echo it: someone may have pasted `?apiKey=…`.
            ck.problem(
                &f.key,
                "must be the account's base URL without a query (put the key in crm.api_key)",
            );
        } else {
            url = url.trim_end_matches('/').to_string();
            if url.contains("/api/") || url.ends_with("/api") {
                ck.warn(
                    &f.key,
                    "should be the account's base URL like \"https://example.retailcrm.ru\"; /api/v5/… is added by callbridge",
                );
            }
        }
    }

    let api_key = ck.required_secret(&t.field("api_key"));
    let site = ck.string(&t.field("site"));
    let timeout = ck.duration(&t.field("timeout"), DEFAULT_CRM_TIMEOUT, false);
    let rate_limit_per_sec = ck.rate(&t.field("rate_limit_per_sec"), DEFAULT_CRM_RATE_LIMIT);
    let telephony_rate_limit_per_sec = ck.rate(
        &t.field("telephony_rate_limit_per_sec"),
        DEFAULT_CRM_TELEPHONY_RATE_LIMIT,
    );
    let give_up_after = ck.duration(&t.field("give_up_after"), DEFAULT_GIVE_UP_AFTER, false);
    let f = t.field("concurrency");
    let concurrency = match f.value {
        None => DEFAULT_CRM_CONCURRENCY,
        Some(v) => ck
            .integer(&f.key, v, 1, 1024, "expected an integer between 1 and 1024")
            .map_or(DEFAULT_CRM_CONCURRENCY, |n| n as usize),
    };
    let f = t.field("default_region");
    let default_region = ck.string(&f).unwrap_or_else(|| "RU".to_string());
    if crate::phone::PhoneNormalizer::new(&default_region).is_err() {
        ck.problem(
            &f.key,
            format!("unknown region {default_region:?}; expected an ISO 3166 code like \"RU\""),
        );
    }
    let order_method = ck
        .string(&t.field("order_method"))
        .unwrap_or_else(|| "phone".to_string());
    let f = t.field("final_status_groups");
    let mut final_status_groups = ck.string_list(&f);
    if f.value.is_none() {
        final_status_groups = vec!["complete".to_string(), "cancel".to_string()];
    }
    let module_code = ck.string(&t.field("module_code"));
    let directory_refresh = ck.duration(
        &t.field("directory_refresh"),
        DEFAULT_DIRECTORY_REFRESH,
        false,
    );
    t.finish(ck);
    CrmConfig {
        kind,
        url,
        api_key,
        site,
        timeout,
        rate_limit_per_sec,
        telephony_rate_limit_per_sec,
        give_up_after,
        concurrency,
        default_region,
        order_method,
        final_status_groups,
        module_code,
        directory_refresh,
    }
}

fn read_employees(ck: &mut Checker<'_>, f: Field<'_>) -> EmployeesConfig {
    let mut t = ck.section(f);
    let senior = read_senior(ck, &t.field("senior"));

    let f = t.field("extensions");
    let mut extensions = BTreeMap::new();
    match f.value {
        None => {}
        Some(Value::Object(map)) => {
            for (ext, v) in map {
                let key = format!("{}.{ext:?}", f.key);
                if is_blank(v) {
                    continue; // e.g. CALLBRIDGE__EMPLOYEES__EXTENSIONS__101= : not mapped
                }
                if ext.trim().is_empty() {
                    ck.problem(&key, "empty extension number");
                } else if let Some(id) = ck.user_id(&key, v) {
                    extensions.insert(ext.clone(), id);
                }
            }
        }
        Some(other) => {
            let message = format!(
                "expected a table of extension = CRM user id, like \"101\" = 3; got {}",
                type_name(other)
            );
            ck.problem(&f.key, message);
        }
    }
    t.finish(ck);
    EmployeesConfig { senior, extensions }
}

fn read_senior(ck: &mut Checker<'_>, f: &Field<'_>) -> Vec<u64> {
    let mut ids: Vec<u64> = Vec::new();
    match f.value {
        None => {}
        Some(Value::Array(items)) => {
            for (i, v) in items.iter().enumerate() {
                if is_blank(v) {
                    continue;
                }
                if let Some(id) = ck.user_id(&format!("{}[{i}]", f.key), v) {
                    ids.push(id);
                }
            }
        }
        // From the environment: a comma list "7,8".
        Some(Value::String(s)) => {
            for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                match part.parse::<u64>() {
                    Ok(id) if id > 0 => ids.push(id),
                    _ => {
                        ck.problem(
                            &f.key,
                            format!("expected CRM user ids separated by commas, like \"7,8\", got {s:?}"),
                        );
                        return Vec::new();
                    }
                }
            }
        }
        Some(v @ Value::Number(_)) => ids.extend(ck.user_id(&f.key, v)),
        Some(other) => {
            let message = format!(
                "expected a list of CRM user ids like [7, 8], got {}",
                type_name(other)
            );
            ck.problem(&f.key, message);
        }
    }
    let mut seen = BTreeSet::new();
    ids.retain(|id| seen.insert(*id));
    ids
}

fn read_matrix(ck: &mut Checker<'_>, f: Field<'_>) -> MatrixConfig {
    let mut t = ck.section(f);
    let create_on = ck.choice(
        &t.field("create_on"),
        &[("answer", CreateOn::Answer), ("ring", CreateOn::Ring)],
        CreateOn::Answer,
    );
    t.finish(ck);
    MatrixConfig { create_on }
}

fn read_log(ck: &mut Checker<'_>, f: Field<'_>) -> LogConfig {
    let mut t = ck.section(f);
    let level = ck
        .string(&t.field("level"))
        .unwrap_or_else(|| DEFAULT_LOG_LEVEL.to_string());
    let format = ck.choice(
        &t.field("format"),
        &[("text", LogFormat::Text), ("json", LogFormat::Json)],
        LogFormat::Text,
    );
    t.finish(ck);
    LogConfig { level, format }
}

fn read_daemon(ck: &mut Checker<'_>, f: Field<'_>) -> DaemonConfig {
    let mut t = ck.section(f);
    let shutdown_grace = ck.duration(&t.field("shutdown_grace"), DEFAULT_SHUTDOWN_GRACE, true);
    t.finish(ck);
    DaemonConfig { shutdown_grace }
}

// ---------------------------------------------------------------------------------------
// Summary
// ---------------------------------------------------------------------------------------

/// `scheme://user:password@host/…` → `scheme://user:***@host/…`.
pub fn redact_url_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _password)) => format!("{scheme}://{user}:***@{host}{path}"),
            None => url.to_string(),
        },
        None => url.to_string(),
    }
}

/// A duration as the configuration would write it: whole days as days (humantime
/// would say "2months 29days 2h 52m 48s" for 90 days).
fn human_duration(d: Duration) -> String {
    const DAY: u64 = 86_400;
    if d.as_secs() >= DAY && d.as_secs().is_multiple_of(DAY) && d.subsec_nanos() == 0 {
        format!("{}days", d.as_secs() / DAY)
    } else {
        humantime::format_duration(d).to_string()
    }
}

impl Config {
    /// A short human summary for `check-config`; never contains a secret. Warnings are
    /// not included (see [`Config::warnings`]).
    pub fn summary(&self) -> String {
        let mut lines = Vec::new();
        lines.push(format!("store: {}", redact_url_password(&self.store.url)));
        lines.push(format!(
            "http: listening on {}, reachable by the CRM as {}; recording links valid {}, a recording not on disk yet waited for {} after the call",
            self.http.listen,
            self.http.public_url,
            human_duration(self.http.link_ttl),
            human_duration(self.http.recording_wait)
        ));
        for pbx in &self.pbx {
            let login = match pbx.kind {
                PbxKind::Asterisk => format!("AMI user {:?}", pbx.username),
                PbxKind::FreeSwitch => "the event socket's password".to_string(),
            };
            lines.push(format!(
                "pbx {:?}: {} at {}:{} with {login}, recordings in {}",
                pbx.name,
                pbx.kind,
                pbx.host,
                pbx.port,
                pbx.recordings_dir.display()
            ));
        }
        let site = match &self.crm.site {
            Some(site) => format!(", site {site:?}"),
            None => String::new(),
        };
        lines.push(format!("crm: {} at {}{site}", self.crm.kind, self.crm.url));
        lines.push(format!(
            "delivery: {} requests/s ({}/s telephony), {} calls at a time, dead-lettered after {}",
            self.crm.rate_limit_per_sec,
            self.crm.telephony_rate_limit_per_sec,
            self.crm.concurrency,
            humantime::format_duration(self.crm.give_up_after)
        ));
        let seniors = if self.employees.senior.is_empty() {
            "none".to_string()
        } else {
            let ids: Vec<String> = self.employees.senior.iter().map(u64::to_string).collect();
            ids.join(", ")
        };
        lines.push(format!(
            "employees: {} extension(s) mapped to CRM users; senior managers: {seniors}",
            self.employees.extensions.len()
        ));
        lines.push(format!(
            "calls create CRM records on: {}",
            self.matrix.create_on
        ));
        lines.push(format!("log: {} ({})", self.log.level, self.log.format));
        lines.join("\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = include_str!("../../conf/callbridge.toml");

    /// The smallest valid file.
    const MINIMAL: &str = r#"
[[pbx]]
name = "office"
kind = "asterisk"
host = "10.0.0.5"
username = "callbridge"
secret = "ami-pass"

[crm]
kind = "retailcrm"
url = "https://shop.retailcrm.ru/"
api_key = "crm-key"
"#;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn with_env(text: &str, pairs: &[(&str, &str)]) -> Result<Config, ConfigErrors> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("callbridge.toml");
        std::fs::write(&path, text).unwrap();
        load_with_env(&path, env(pairs))
    }

    /// The error lines a user would see.
    fn errors(text: &str) -> Vec<String> {
        errors_env(text, &[])
    }

    fn errors_env(text: &str, pairs: &[(&str, &str)]) -> Vec<String> {
        match with_env(text, pairs) {
            Ok(_) => panic!("expected errors for:\n{text}"),
            Err(e) => e.to_string().lines().map(str::to_string).collect(),
        }
    }

    fn warnings(cfg: &Config) -> Vec<String> {
        cfg.warnings.iter().map(ToString::to_string).collect()
    }

    /// MINIMAL with more sections appended.
    #[test]
    fn freeswitch_needs_only_host_and_password_and_defaults_to_port_8021() {
        let text = MINIMAL
            .replace("kind = \"asterisk\"", "kind = \"freeswitch\"")
            .replace("username = \"callbridge\"\n", "")
            .replace("ami-pass", "esl-pass");
        let cfg = from_toml_str(&text).unwrap();
        let pbx = &cfg.pbx[0];
        assert_eq!(pbx.kind, PbxKind::FreeSwitch);
        assert_eq!(pbx.port, 8021);
        assert_eq!(
            pbx.recordings_dir,
            PathBuf::from("/usr/local/freeswitch/recordings")
        );
        let summary = cfg.summary();
        assert!(
            summary.contains(
                "pbx \"office\": freeswitch at 10.0.0.5:8021 with the event socket's password"
            ),
            "{summary}"
        );
        assert!(!summary.contains("esl-pass"), "{summary}");
        // An Asterisk still needs its AMI user.
        let text = MINIMAL.replace("username = \"callbridge\"\n", "");
        assert_eq!(errors(&text), ["pbx[0].username: missing"]);
    }

    fn minimal_with(extra: &str) -> String {
        format!("{MINIMAL}\n{extra}\n")
    }

    #[test]
    fn example_file_parses_with_documented_values() {
        let cfg = from_toml_str(EXAMPLE).unwrap();
        assert_eq!(cfg.store.url, "sqlite://callbridge.db");
        assert_eq!(cfg.http.listen, "127.0.0.1:8089".parse().unwrap());
        assert_eq!(cfg.http.public_url, "http://127.0.0.1:8089");
        assert_eq!(cfg.pbx.len(), 1);
        let pbx = &cfg.pbx[0];
        assert_eq!(pbx.name, "office");
        assert_eq!(pbx.kind, PbxKind::Asterisk);
        assert_eq!(pbx.host, "127.0.0.1");
        assert_eq!(pbx.port, 5038);
        assert_eq!(pbx.username, "callbridge");
        assert_eq!(
            pbx.recordings_dir,
            PathBuf::from("/var/spool/asterisk/monitor")
        );
        assert_eq!(pbx.ping_interval, Duration::from_secs(20));
        assert_eq!(pbx.ping_timeout, Duration::from_secs(10));
        assert_eq!(pbx.connect_timeout, Duration::from_secs(5));
        assert_eq!(pbx.reconnect_max_delay, Duration::from_secs(30));
        assert_eq!(cfg.crm.kind, CrmKind::RetailCrm);
        assert_eq!(cfg.crm.url, "https://example.retailcrm.ru");
        assert_eq!(cfg.crm.site.as_deref(), Some("main"));
        assert_eq!(cfg.crm.timeout, Duration::from_secs(10));
        assert_eq!(cfg.employees.senior, vec![7]);
        assert_eq!(cfg.employees.extensions.get("101"), Some(&3));
        assert_eq!(cfg.employees.extensions.get("102"), Some(&4));
        assert_eq!(cfg.matrix.create_on, CreateOn::Answer);
        assert_eq!(cfg.log.level, "info");
        assert_eq!(cfg.log.format, LogFormat::Text);
        assert_eq!(cfg.daemon.shutdown_grace, Duration::from_secs(10));
        // Only the placeholder secrets are pointed out; no key of the example is unknown.
        for w in warnings(&cfg) {
            assert!(w.contains("placeholder"), "unexpected warning: {w}");
        }
        assert_eq!(
            warnings(&cfg),
            vec![
                "http.link_secret: looks like a placeholder from the example; set the real value",
                "pbx[0].secret: looks like a placeholder from the example; set the real value",
                "crm.api_key: looks like a placeholder from the example; set the real value",
            ]
        );
    }

    #[test]
    fn defaults_fill_everything_optional() {
        let cfg = from_toml_str(MINIMAL).unwrap();
        assert_eq!(cfg.store.url, DEFAULT_STORE_URL);
        assert_eq!(cfg.http.listen, default_http_listen());
        assert_eq!(cfg.http.public_url, "http://127.0.0.1:8089");
        assert!(cfg.http.link_secret.is_empty());
        assert_eq!(cfg.pbx[0].port, 5038);
        assert_eq!(
            cfg.pbx[0].recordings_dir,
            PathBuf::from(DEFAULT_RECORDINGS_DIR)
        );
        assert_eq!(cfg.pbx[0].ping_interval, DEFAULT_PING_INTERVAL);
        assert_eq!(cfg.pbx[0].ping_timeout, DEFAULT_PING_TIMEOUT);
        assert_eq!(cfg.pbx[0].connect_timeout, DEFAULT_CONNECT_TIMEOUT);
        assert_eq!(cfg.pbx[0].reconnect_max_delay, DEFAULT_RECONNECT_MAX_DELAY);
        assert_eq!(cfg.pbx[0].secret.expose(), "ami-pass");
        assert_eq!(
            cfg.crm.url, "https://shop.retailcrm.ru",
            "trailing slash removed"
        );
        assert_eq!(cfg.crm.api_key.expose(), "crm-key");
        assert_eq!(cfg.crm.site, None);
        assert_eq!(cfg.crm.timeout, DEFAULT_CRM_TIMEOUT);
        assert!(cfg.employees.senior.is_empty());
        assert!(cfg.employees.extensions.is_empty());
        assert_eq!(cfg.matrix.create_on, CreateOn::Answer);
        assert_eq!(cfg.log.level, "info");
        assert_eq!(cfg.log.format, LogFormat::Text);
        assert_eq!(cfg.daemon.shutdown_grace, DEFAULT_SHUTDOWN_GRACE);
        assert_eq!(
            warnings(&cfg),
            vec!["http.link_secret: not set; recording links are signed with a random key and stop working when callbridge restarts (set a long random string)"]
        );
    }

    #[test]
    fn public_url_follows_listen_and_loses_trailing_slash() {
        let cfg = from_toml_str(&minimal_with("[http]\nlisten = \"127.0.0.1:9000\"")).unwrap();
        assert_eq!(cfg.http.public_url, "http://127.0.0.1:9000");
        let cfg = from_toml_str(&minimal_with(
            "[http]\nlisten = \"0.0.0.0:9000\"\npublic_url = \"https://bridge.example.com/\"",
        ))
        .unwrap();
        assert_eq!(cfg.http.public_url, "https://bridge.example.com");
        let cfg = from_toml_str(&minimal_with("[http]\nlisten = \"0.0.0.0:9000\"")).unwrap();
        assert!(warnings(&cfg).iter().any(|w| w.starts_with(
            "http.public_url: not set, and the default \"http://0.0.0.0:9000\" cannot be reached"
        )));
    }

    #[test]
    fn call_classification_keys() {
        let text = MINIMAL.replace(
            "secret = \"ami-pass\"",
            "secret = \"ami-pass\"\ninternal_extensions = [\"100-199\", \"2001\"]\ntrunk_contexts = [\"from-trunk\", \"from-pstn\"]\nvoicemail_dir = \"/srv/vm\"\nstale_call_timeout = \"2h\"\nresync_interval = \"1m\"",
        );
        let cfg = from_toml_str(&text).unwrap();
        let pbx = &cfg.pbx[0];
        assert_eq!(
            pbx.internal_extensions,
            vec![
                ExtensionRange {
                    first: 100,
                    last: 199
                },
                ExtensionRange {
                    first: 2001,
                    last: 2001
                }
            ]
        );
        assert_eq!(pbx.trunk_contexts, vec!["from-trunk", "from-pstn"]);
        assert_eq!(pbx.voicemail_dir, PathBuf::from("/srv/vm"));
        assert_eq!(pbx.stale_call_timeout, Duration::from_secs(7200));
        assert_eq!(pbx.resync_interval, Duration::from_secs(60));
        let defaults = from_toml_str(MINIMAL).unwrap();
        assert!(defaults.pbx[0].internal_extensions.is_empty());
        assert_eq!(
            defaults.pbx[0].voicemail_dir,
            PathBuf::from(DEFAULT_VOICEMAIL_DIR)
        );

        let bad = MINIMAL.replace(
            "secret = \"ami-pass\"",
            "secret = \"ami-pass\"\ninternal_extensions = [\"100-199\", \"199-100\", \"abc\"]",
        );
        assert_eq!(
            errors(&bad),
            vec![
                "pbx[0].internal_extensions[1]: expected an extension number or a range like \"100-199\", got \"199-100\"",
                "pbx[0].internal_extensions[2]: expected an extension number or a range like \"100-199\", got \"abc\"",
            ]
        );
        let env_list = with_env(
            MINIMAL,
            &[("CALLBRIDGE__PBX__0__INTERNAL_EXTENSIONS", "100-150,2001")],
        )
        .unwrap();
        assert_eq!(env_list.pbx[0].internal_extensions.len(), 2);
        assert!(
            ExtensionRange::parse("101").is_some_and(|r| r.contains("101") && !r.contains("1010"))
        );
    }

    #[test]
    fn delivery_keys_have_the_api_defaults_and_are_checked() {
        let cfg = from_toml_str(MINIMAL).unwrap();
        assert_eq!(cfg.crm.rate_limit_per_sec, 10.0);
        assert_eq!(cfg.crm.telephony_rate_limit_per_sec, 40.0);
        assert_eq!(cfg.crm.give_up_after, Duration::from_secs(24 * 3600));
        assert_eq!(cfg.crm.concurrency, DEFAULT_CRM_CONCURRENCY);
        let cfg = from_toml_str(&minimal_with(
            "rate_limit_per_sec = 2.5\ntelephony_rate_limit_per_sec = 20\ngive_up_after = \"6h\"\nconcurrency = 4",
        ))
        .unwrap();
        assert_eq!(cfg.crm.rate_limit_per_sec, 2.5);
        assert_eq!(cfg.crm.telephony_rate_limit_per_sec, 20.0);
        assert_eq!(cfg.crm.give_up_after, Duration::from_secs(6 * 3600));
        assert_eq!(cfg.crm.concurrency, 4);
        let err = from_toml_str(&minimal_with("rate_limit_per_sec = 0")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "crm.rate_limit_per_sec: expected requests per second, a number above 0 like 10 or 2.5, got 0"
        );
        let err = from_toml_str(&minimal_with("give_up_after = \"soon\"")).unwrap_err();
        assert!(err.to_string().starts_with("crm.give_up_after: "), "{err}");
        let cfg = from_toml_str(&format!(
            "[store]\nurl = \"postgres://cb:pw@127.0.0.1/cb\"\n{MINIMAL}"
        ))
        .unwrap();
        assert_eq!(cfg.store.url, "postgres://cb:pw@127.0.0.1/cb");
        assert!(cfg
            .summary()
            .contains("store: postgres://cb:***@127.0.0.1/cb"));
    }

    #[test]
    fn optional_keys_are_read() {
        let cfg = from_toml_str(&minimal_with(
            r#"
[matrix]
create_on = "ring"
[log]
level = "callbridge=debug,info"
format = "json"
[daemon]
shutdown_grace = "0s"
"#,
        ))
        .unwrap();
        assert_eq!(cfg.matrix.create_on, CreateOn::Ring);
        assert_eq!(cfg.log.level, "callbridge=debug,info");
        assert_eq!(cfg.log.format, LogFormat::Json);
        assert_eq!(cfg.daemon.shutdown_grace, Duration::ZERO);
    }

    #[test]
    fn recording_keys_have_defaults_and_transcoding_is_refused_by_name() {
        let cfg = from_toml_str(&minimal_with("")).unwrap();
        assert_eq!(cfg.http.recording_wait, DEFAULT_RECORDING_WAIT);
        let cfg = from_toml_str(&minimal_with(
            "[http]\nrecording_wait = \"0s\"\nrecording_format = \"original\"",
        ))
        .unwrap();
        assert_eq!(cfg.http.recording_wait, Duration::ZERO);
        let e = errors(&minimal_with("[http]\nrecording_format = \"mp3\""));
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(
            e[0].starts_with("http.recording_format: \"mp3\" is not supported"),
            "{e:?}"
        );
        let e = errors(&minimal_with("[http]\nrecording_wait = \"soon\""));
        assert!(
            e[0].starts_with("http.recording_wait: expected a duration"),
            "{e:?}"
        );
    }

    #[test]
    fn matrix_keys_have_defaults_and_are_checked() {
        let cfg = from_toml_str(MINIMAL).unwrap();
        assert_eq!(cfg.crm.default_region, "RU");
        assert_eq!(cfg.crm.order_method, "phone");
        assert_eq!(cfg.crm.final_status_groups, vec!["complete", "cancel"]);
        assert_eq!(cfg.crm.module_code, None);
        assert_eq!(cfg.pbx[0].campaign_variables.source, "UTM_SOURCE");
        assert_eq!(cfg.pbx[0].campaign_variables.term, "UTM_TERM");

        let text = MINIMAL.replace(
            "secret = \"ami-pass\"",
            "secret = \"ami-pass\"\nutm_variables = { source = \"CT_SRC\" }",
        ) + "default_region = \"kz\"\norder_method = \"missed-call\"\nfinal_status_groups = [\"complete\"]\nmodule_code = \"callbridge\"\n";
        let cfg = from_toml_str(&text).unwrap();
        assert_eq!(cfg.pbx[0].campaign_variables.source, "CT_SRC");
        assert_eq!(cfg.pbx[0].campaign_variables.medium, "UTM_MEDIUM");
        assert_eq!(cfg.crm.default_region, "kz");
        assert_eq!(cfg.crm.order_method, "missed-call");
        assert_eq!(cfg.crm.final_status_groups, vec!["complete"]);
        assert_eq!(cfg.crm.module_code.as_deref(), Some("callbridge"));

        let bad = errors(&(MINIMAL.to_string() + "default_region = \"Narnia\"\n"));
        assert_eq!(bad.len(), 1, "{bad:?}");
        assert!(bad[0].starts_with("crm.default_region: "), "{bad:?}");
        let bad = errors(&MINIMAL.replace(
            "secret = \"ami-pass\"",
            "secret = \"ami-pass\"\nutm_variables = { sorce = \"X\", medium = 5 }",
        ));
        assert!(
            bad.iter()
                .any(|e| e.starts_with("pbx[0].utm_variables.medium: ")),
            "{bad:?}"
        );
    }

    /// Each kind of mistake gives exactly one line, naming the key.
    #[test]
    fn each_error_is_one_line_naming_the_key() {
        let base_pbx = "name = \"office\"\nkind = \"asterisk\"\nhost = \"h\"\nusername = \"u\"\nsecret = \"s\"";
        let crm = "[crm]\nkind = \"retailcrm\"\nurl = \"https://x.retailcrm.ru\"\napi_key = \"k\"";
        let cases: Vec<(String, &str)> = vec![
            (
                format!("[[pbx]]\n{base_pbx}\n[crm]\nkind = \"retailcrm\"\nurl = \"https://x.retailcrm.ru\""),
                "crm.api_key: missing",
            ),
            (
                format!("[[pbx]]\n{base_pbx}\n[crm]\nkind = \"retailcrm\"\nurl = \"https://x.retailcrm.ru\"\napi_key = \"\""),
                "crm.api_key: missing",
            ),
            (
                format!("[[pbx]]\n{base_pbx}\nport = \"abc\"\n{crm}"),
                "pbx[0].port: expected an integer between 1 and 65535, got \"abc\"",
            ),
            (
                format!("[[pbx]]\n{base_pbx}\nport = 70000\n{crm}"),
                "pbx[0].port: expected an integer between 1 and 65535, got 70000",
            ),
            (
                format!("[[pbx]]\n{}\n{crm}", base_pbx.replace("asterisk", "sip")),
                "pbx[0].kind: unknown kind \"sip\"; expected \"asterisk\" or \"freeswitch\"",
            ),
            (
                format!("[store]\nurl = \"mysql://localhost/cb\"\n[[pbx]]\n{base_pbx}\n{crm}"),
                "store.url: unsupported scheme \"mysql\"; expected sqlite:// or postgres://",
            ),
            (
                format!("[[pbx]]\n{base_pbx}\n{}", crm.replace("https://x.retailcrm.ru", "x.retailcrm.ru")),
                "crm.url: not an http(s) URL: \"x.retailcrm.ru\"",
            ),
            (
                format!("[http]\nlisten = \"localhost\"\n[[pbx]]\n{base_pbx}\n{crm}"),
                "http.listen: not a socket address \"localhost\"; expected IP:PORT like \"127.0.0.1:8089\"",
            ),
            (
                format!("[[pbx]]\n{base_pbx}\n{crm}\n[employees.extensions]\n\"101\" = \"abc\""),
                "employees.extensions.\"101\": expected a CRM user id (positive integer), got \"abc\"",
            ),
            (
                format!("[[pbx]]\n{base_pbx}\n{crm}\n[employees.extensions]\n\"101\" = 0"),
                "employees.extensions.\"101\": expected a CRM user id (positive integer), got 0",
            ),
            (
                format!("[[pbx]]\n{base_pbx}\n{crm}\n[employees]\nsenior = [7, -1]"),
                "employees.senior[1]: expected a CRM user id (positive integer), got -1",
            ),
            (
                format!("[[pbx]]\n{base_pbx}\n{crm}\n[matrix]\ncreate_on = \"pickup\""),
                "matrix.create_on: expected \"answer\" or \"ring\", got \"pickup\"",
            ),
            (
                format!("[[pbx]]\n{base_pbx}\n{crm}\n[log]\nformat = \"xml\""),
                "log.format: expected \"text\" or \"json\", got \"xml\"",
            ),
            (
                format!("[[pbx]]\n{base_pbx}\nping_interval = \"soon\"\n{crm}"),
                "pbx[0].ping_interval: expected a duration like \"20s\", \"5m\" or \"24h\", got \"soon\"",
            ),
            (
                format!("[[pbx]]\n{base_pbx}\nping_interval = 20\n{crm}"),
                "pbx[0].ping_interval: expected a duration with a unit like \"20s\", got the bare number 20",
            ),
            (
                format!("[[pbx]]\n{base_pbx}\nconnect_timeout = \"0s\"\n{crm}"),
                "pbx[0].connect_timeout: must be longer than zero, got \"0s\"",
            ),
            (
                format!("[[pbx]]\n{base_pbx}\n{crm}\ntimeout = \"10\""),
                "crm.timeout: expected a duration like \"20s\", \"5m\" or \"24h\", got \"10\"",
            ),
            (
                format!("[[pbx]]\n{}\n{crm}", base_pbx.replace("host = \"h\"", "")),
                "pbx[0].host: missing",
            ),
            (
                format!("[[pbx]]\n{}\n{crm}", base_pbx.replace("host = \"h\"", "host = \"10.0.0.1:5038\"")),
                "pbx[0].host: expected a host name or IP address without a port, got \"10.0.0.1:5038\"; put the port in pbx[0].port",
            ),
            (
                format!("[[pbx]]\n{base_pbx}\n[[pbx]]\n{base_pbx}\n{crm}"),
                "pbx[1].name: duplicate name \"office\"",
            ),
            (crm.to_string(), "pbx: missing; add at least one [[pbx]] section"),
            (
                format!("[pbx]\n{base_pbx}\n{crm}"),
                "pbx: expected [[pbx]] sections (an array of tables), got a table; write [[pbx]] with double brackets",
            ),
            (
                format!("[[pbx]]\n{base_pbx}"),
                "crm: missing; add a [crm] section with kind, url and api_key",
            ),
            (
                format!("crm = \"retailcrm\"\n[[pbx]]\n{base_pbx}"),
                "crm: expected a table ([crm] section), got a string",
            ),
            (
                format!("[[pbx]]\n{base_pbx}\n{}", crm.replace("kind = \"retailcrm\"", "kind = \"amocrm\"")),
                "crm.kind: unknown kind \"amocrm\"; expected \"retailcrm\"",
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(
                errors(&text),
                vec![expected.to_string()],
                "for file:\n{text}"
            );
        }
    }

    #[test]
    fn three_mistakes_give_exactly_three_lines() {
        let text = r#"
[[pbx]]
name = "office"
kind = "sip"
host = "10.0.0.5"
port = "fifty"
username = "callbridge"

[crm]
kind = "retailcrm"
url = "https://shop.retailcrm.ru"
api_key = "k"
"#;
        assert_eq!(
            errors(text),
            vec![
                "pbx[0].kind: unknown kind \"sip\"; expected \"asterisk\" or \"freeswitch\"",
                "pbx[0].port: expected an integer between 1 and 65535, got \"fifty\"",
                "pbx[0].secret: missing",
            ]
        );
    }

    #[test]
    fn empty_file_names_the_two_required_sections() {
        assert_eq!(
            errors(""),
            vec![
                "pbx: missing; add at least one [[pbx]] section",
                "crm: missing; add a [crm] section with kind, url and api_key",
            ]
        );
    }

    #[test]
    fn missing_file_is_one_problem_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nope.toml");
        let err = load_with_env(&path, Vec::new()).unwrap_err();
        assert_eq!(err.0.len(), 1);
        assert_eq!(err.0[0].key, "config");
        let text = err.to_string();
        assert!(text.starts_with("config: cannot read \""), "{text}");
        assert!(text.contains("nope.toml"), "{text}");
        assert_eq!(text.lines().count(), 1);
    }

    #[test]
    fn invalid_toml_is_one_problem_with_line_and_column() {
        let text = "[crm]\nkind = \"retailcrm\"\nurl = https://x\n";
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, text).unwrap();
        let err = load_with_env(&path, Vec::new()).unwrap_err();
        assert_eq!(err.0.len(), 1, "{err}");
        let line = err.to_string();
        assert_eq!(line.lines().count(), 1, "{line}");
        assert!(line.starts_with("config: \""), "{line}");
        assert!(
            line.contains("bad.toml\" is not valid TOML: line 3, column 7: "),
            "{line}"
        );

        let err = from_toml_str("[pbx\n").unwrap_err().to_string();
        assert!(
            err.starts_with("config: the configuration is not valid TOML: line 1, column"),
            "{err}"
        );
    }

    #[test]
    fn unknown_keys_are_warnings_not_errors() {
        let text = MINIMAL.replace(
            "api_key = \"crm-key\"",
            "api_key = \"crm-key\"\napi_kye = \"x\"",
        ) + "\n[crmm]\nurl = \"x\"\n";
        let text = text.replace(
            "secret = \"ami-pass\"",
            "secret = \"ami-pass\"\nSecret = \"y\"\ntimeout = \"1s\"",
        );
        let cfg = from_toml_str(&text).unwrap();
        let w = warnings(&cfg);
        assert!(
            w.contains(&"crm.api_kye: unknown key (ignored)".to_string()),
            "{w:?}"
        );
        assert!(
            w.contains(&"crmm: unknown key (ignored)".to_string()),
            "{w:?}"
        );
        assert!(
            w.contains(&"pbx[0].timeout: unknown key (ignored)".to_string()),
            "{w:?}"
        );
        assert!(
            w.contains(
                &"pbx[0].Secret: unknown key (ignored); keys are lower-case: \"secret\""
                    .to_string()
            ),
            "{w:?}"
        );
    }

    #[test]
    fn extension_keys_keep_their_spelling() {
        let cfg = from_toml_str(&minimal_with(
            "[employees.extensions]\n\"101\" = 3\n\"0102\" = \"4\"\n\"Alice\" = 5\nSIP-Bob = 6\n\"*99.1\" = 7",
        ))
        .unwrap();
        let keys: Vec<&str> = cfg
            .employees
            .extensions
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(keys, vec!["*99.1", "0102", "101", "Alice", "SIP-Bob"]);
        assert_eq!(cfg.employees.extensions["0102"], 4);
        assert_eq!(cfg.employees.extensions["Alice"], 5);
    }

    #[test]
    fn env_overrides_section_keys_pbx_index_map_and_lists() {
        let text = MINIMAL.replace("api_key = \"crm-key\"", "")
            + "\n[employees.extensions]\n\"101\" = 3\n";
        let cfg = with_env(
            &text,
            &[
                ("CALLBRIDGE__CRM__API_KEY", "from-env-key"),
                ("CALLBRIDGE__CRM__TIMEOUT", "3s"),
                (
                    "CALLBRIDGE__STORE__URL",
                    "sqlite:///var/lib/callbridge/cb.db",
                ),
                ("CALLBRIDGE__PBX__0__SECRET", "env-ami"),
                ("CALLBRIDGE__PBX__0__PORT", "5039"),
                ("CALLBRIDGE__EMPLOYEES__EXTENSIONS__101", "30"),
                ("CALLBRIDGE__EMPLOYEES__EXTENSIONS__205", "9"),
                ("CALLBRIDGE__EMPLOYEES__EXTENSIONS__Alice", "11"),
                ("CALLBRIDGE__EMPLOYEES__SENIOR", "7, 8"),
                ("CALLBRIDGE__Matrix__Create_On", "ring"),
                ("CALLBRIDGE__HTTP__LISTEN", "0.0.0.0:9090"),
                ("CALLBRIDGE__HTTP__PUBLIC_URL", "https://bridge.example.com"),
                ("CALLBRIDGE__DAEMON__SHUTDOWN_GRACE", "1m"),
                ("UNRELATED", "x"),
                ("CALLBRIDGE_SINGLE_UNDERSCORE", "x"),
            ],
        )
        .unwrap();
        assert_eq!(cfg.crm.api_key.expose(), "from-env-key");
        assert_eq!(cfg.crm.timeout, Duration::from_secs(3));
        assert_eq!(cfg.store.url, "sqlite:///var/lib/callbridge/cb.db");
        assert_eq!(cfg.pbx[0].secret.expose(), "env-ami");
        assert_eq!(cfg.pbx[0].port, 5039);
        assert_eq!(cfg.pbx[0].name, "office", "rest of the [[pbx]] kept");
        assert_eq!(cfg.employees.extensions.get("101"), Some(&30));
        assert_eq!(cfg.employees.extensions.get("205"), Some(&9));
        assert_eq!(cfg.employees.extensions.get("Alice"), Some(&11));
        assert_eq!(cfg.employees.senior, vec![7, 8]);
        assert_eq!(cfg.matrix.create_on, CreateOn::Ring);
        assert_eq!(cfg.http.listen, "0.0.0.0:9090".parse().unwrap());
        assert_eq!(cfg.http.public_url, "https://bridge.example.com");
        assert_eq!(cfg.daemon.shutdown_grace, Duration::from_secs(60));
    }

    #[test]
    fn env_can_define_a_whole_pbx_and_remove_an_extension() {
        let text = "[crm]\nkind = \"retailcrm\"\nurl = \"https://x.retailcrm.ru\"\napi_key = \"k\"\n[employees.extensions]\n\"101\" = 3\n\"102\" = 4\n";
        let cfg = with_env(
            text,
            &[
                ("CALLBRIDGE__PBX__0__NAME", "env-pbx"),
                ("CALLBRIDGE__PBX__0__KIND", "asterisk"),
                ("CALLBRIDGE__PBX__0__HOST", "pbx.local"),
                ("CALLBRIDGE__PBX__0__USERNAME", "cb"),
                ("CALLBRIDGE__PBX__0__SECRET", "s"),
                ("CALLBRIDGE__PBX__0__PING_INTERVAL", "5s"),
                ("CALLBRIDGE__EMPLOYEES__EXTENSIONS__102", ""),
                ("CALLBRIDGE__EMPLOYEES__SENIOR__0", "12"),
            ],
        )
        .unwrap();
        assert_eq!(cfg.pbx[0].name, "env-pbx");
        assert_eq!(cfg.pbx[0].host, "pbx.local");
        assert_eq!(cfg.pbx[0].ping_interval, Duration::from_secs(5));
        assert_eq!(cfg.employees.extensions.len(), 1);
        assert_eq!(cfg.employees.senior, vec![12]);
    }

    #[test]
    fn env_values_are_checked_like_file_values() {
        assert_eq!(
            errors_env(MINIMAL, &[("CALLBRIDGE__PBX__0__PORT", "abc")]),
            vec!["pbx[0].port: expected an integer between 1 and 65535, got \"abc\""]
        );
        assert_eq!(
            errors_env(MINIMAL, &[("CALLBRIDGE__EMPLOYEES__SENIOR", "7,x")]),
            vec!["employees.senior: expected CRM user ids separated by commas, like \"7,8\", got \"7,x\""]
        );
        assert_eq!(
            errors_env(MINIMAL, &[("CALLBRIDGE__CRM__API_KEY", "")]),
            vec!["crm.api_key: missing"]
        );
        assert_eq!(
            errors_env(MINIMAL, &[("CALLBRIDGE__PBX__X__SECRET", "s")]),
            vec!["CALLBRIDGE__PBX__X__SECRET: expected a [[pbx]] index (0 for the first) after CALLBRIDGE__PBX, got \"X\""]
        );
        assert_eq!(
            errors_env(MINIMAL, &[("CALLBRIDGE__PBX__SECRET", "s")]),
            vec!["CALLBRIDGE__PBX__SECRET: expected a [[pbx]] index (0 for the first) after CALLBRIDGE__PBX, got \"SECRET\""]
        );
        assert_eq!(
            errors_env(MINIMAL, &[("CALLBRIDGE__EMPLOYEES__SENIOR__first", "7")]),
            vec!["CALLBRIDGE__EMPLOYEES__SENIOR__first: expected a senior index (0 for the first) after CALLBRIDGE__EMPLOYEES__SENIOR, got \"first\""]
        );
        assert_eq!(
            errors_env(MINIMAL, &[("CALLBRIDGE__CRM____URL", "s")]),
            vec!["CALLBRIDGE__CRM____URL: not a valid override name; expected CALLBRIDGE__SECTION__KEY, e.g. CALLBRIDGE__CRM__API_KEY"]
        );
        // A gap in the [[pbx]] numbering is one line, not one per missing key.
        let lines = errors_env(
            MINIMAL,
            &[
                ("CALLBRIDGE__PBX__2__NAME", "third"),
                ("CALLBRIDGE__PBX__2__KIND", "asterisk"),
                ("CALLBRIDGE__PBX__2__HOST", "h"),
                ("CALLBRIDGE__PBX__2__USERNAME", "u"),
                ("CALLBRIDGE__PBX__2__SECRET", "s"),
            ],
        );
        assert_eq!(
            lines,
            vec![
                "pbx[1]: missing; [[pbx]] sections are numbered from 0 in file order, without gaps"
            ]
        );
    }

    #[test]
    fn unknown_env_keys_are_warnings_naming_the_variable() {
        let cfg = with_env(MINIMAL, &[("CALLBRIDGE__CRM__APIKEY", "x")]).unwrap();
        assert_eq!(
            warnings(&cfg)
                .into_iter()
                .filter(|w| w.contains("unknown"))
                .collect::<Vec<_>>(),
            vec!["crm.apikey: unknown key (ignored; set by CALLBRIDGE__CRM__APIKEY)"]
        );
    }

    /// Distinctive secret values must never appear in what the program prints.
    #[test]
    fn secrets_never_appear_in_messages_debug_or_summary() {
        const AMI: &str = "AmiS3cret-q7zx";
        const KEY: &str = "CrmK3y-w9vu";
        const LINK: &str = "L1nkS3cret-p4kj";
        const ENV_KEY: &str = "EnvK3y-m2tt";
        let text = format!(
            r#"
[http]
link_secret = "{LINK}"
unknown_http = "{LINK}"
[[pbx]]
name = "office"
kind = "asterisk"
host = "10.0.0.5"
username = "callbridge"
secret = "{AMI}"
[crm]
kind = "retailcrm"
url = "https://shop.retailcrm.ru"
api_key = "{KEY}"
"#
        );
        let all = [AMI, KEY, LINK, ENV_KEY, "987654321", "123454321"];
        let assert_clean = |what: &str, output: &str| {
            for s in all {
                assert!(!output.contains(s), "{what} leaks {s}: {output}");
            }
        };

        let cfg = with_env(&text, &[("CALLBRIDGE__CRM__API_KEY", ENV_KEY)]).unwrap();
        assert_eq!(cfg.crm.api_key.expose(), ENV_KEY);
        assert_eq!(cfg.pbx[0].secret.expose(), AMI);
        assert_eq!(cfg.http.link_secret.expose(), LINK);
        assert_clean("Debug", &format!("{cfg:?}"));
        assert_clean("Debug (pretty)", &format!("{cfg:#?}"));
        assert_clean("summary", &cfg.summary());
        assert_clean("warnings", &warnings(&cfg).join("\n"));
        assert_eq!(format!("{}", cfg.crm.api_key), "***");
        assert_eq!(format!("{:?}", cfg.crm.api_key), "***");

        // Wrong types: the message names the type, never the value.
        let wrong = text
            .replace(&format!("\"{AMI}\""), "987654321")
            .replace(&format!("\"{KEY}\""), "[123454321]");
        let lines = errors(&wrong);
        assert_eq!(
            lines,
            vec![
                "pbx[0].secret: expected a string, got an integer",
                "crm.api_key: expected a string, got an array",
            ]
        );
        assert_clean("errors", &lines.join("\n"));

        // Broken TOML on a secret's line: position and reason, not the line itself.
        let broken = text.replace(&format!("\"{AMI}\""), AMI);
        let err = from_toml_str(&broken).unwrap_err().to_string();
        assert!(err.contains("not valid TOML: line 10, column 10"), "{err}");
        assert_clean("TOML error", &err);
    }

    #[test]
    fn placeholder_link_secret_is_a_warning() {
        let cfg = from_toml_str(&minimal_with("[http]\nlink_secret = \"change-me\"")).unwrap();
        assert_eq!(
            warnings(&cfg),
            vec!["http.link_secret: looks like a placeholder from the example; set the real value"]
        );
    }

    #[test]
    fn summary_names_pbxs_crm_store_and_employees() {
        let cfg = from_toml_str(EXAMPLE).unwrap();
        let summary = cfg.summary();
        assert!(
            summary.contains("pbx \"office\": asterisk at 127.0.0.1:5038"),
            "{summary}"
        );
        assert!(
            summary.contains("crm: retailcrm at https://example.retailcrm.ru, site \"main\""),
            "{summary}"
        );
        assert!(
            summary.contains("store: sqlite://callbridge.db"),
            "{summary}"
        );
        assert!(summary.contains("2 extension(s)"), "{summary}");
        assert!(summary.contains("senior managers: 7"), "{summary}");
    }

    #[test]
    fn summary_hides_a_database_password() {
        assert_eq!(
            redact_url_password("postgres://cb:Pa55w0rd@db.local/cb"),
            "postgres://cb:***@db.local/cb"
        );
        assert_eq!(
            redact_url_password("sqlite://callbridge.db"),
            "sqlite://callbridge.db"
        );
    }

    #[test]
    fn crm_url_with_query_is_rejected_without_echoing_it() {
        let text = MINIMAL.replace(
            "https://shop.retailcrm.ru/",
            "https://shop.retailcrm.ru/?apiKey=Qq77secretzz",
        );
        let lines = errors(&text);
        assert_eq!(
            lines,
            vec!["crm.url: must be the account's base URL without a query (put the key in crm.api_key)"]
        );
    }

    #[test]
    fn load_reads_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("callbridge.toml");
        std::fs::write(&path, MINIMAL).unwrap();
        // The process environment of a test run normally has no CALLBRIDGE__ variables.
        if std::env::vars_os().all(|(k, _)| !k.to_string_lossy().starts_with(ENV_PREFIX)) {
            let cfg = load(&path).unwrap();
            assert_eq!(cfg.pbx[0].name, "office");
        }
    }
}
