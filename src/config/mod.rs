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
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Map, Value};

mod defaults;
mod env;
mod problems;
mod summary;
mod types;

pub use defaults::*;
pub use env::ENV_PREFIX;
use env::{env_overrides, EnvOverride};
pub use problems::{ConfigErrors, ConfigProblem};
pub use summary::redact_url_password;
pub use types::{
    Config, CrmConfig, CrmKind, DaemonConfig, EmployeesConfig, HttpConfig, LogConfig, LogFormat,
    MatrixConfig, PbxConfig, PbxKind, Secret, StoreConfig,
};

/// Secret values copied from the example file unchanged.
const PLACEHOLDERS: &[&str] = &["...", "change-me", "changeme"];

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
                Some(Secret::new(s.clone()))
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

#[cfg(test)]
mod tests;
