//! The [`Checker`]: small typed readers, one key at a time, that note every problem with
//! the key it concerns instead of stopping at the first, never quote a secret, and report
//! the keys of a table that nobody asked for as unknown-key warnings.

use super::env::EnvOverride;
use super::problems::ConfigProblem;
use super::types::Secret;
use crate::ids::CrmId;
use serde_json::{Map, Value};
use std::time::Duration;

/// Secret values copied from the example file unchanged.
const PLACEHOLDERS: &[&str] = &["...", "change-me", "changeme"];

/// Collects problems and warnings while the tree is read.
pub(super) struct Checker<'e> {
    pub(super) problems: Vec<ConfigProblem>,
    pub(super) warnings: Vec<ConfigProblem>,
    pub(super) env: &'e [EnvOverride],
}

/// A key of a table as found: `value` is `None` when absent, null or blank.
pub(super) struct Field<'a> {
    pub(super) key: String,
    pub(super) value: Option<&'a Value>,
    /// The table itself is missing or broken (already reported): don't also report
    /// its required keys as missing.
    quiet: bool,
}

/// A table being read; remembers the keys looked at so the others can be reported.
pub(super) struct Table<'a> {
    path: String,
    map: Option<&'a Map<String, Value>>,
    known: Vec<&'static str>,
}

impl<'a> Table<'a> {
    pub(super) fn new(path: impl Into<String>, map: Option<&'a Map<String, Value>>) -> Self {
        Table {
            path: path.into(),
            map,
            known: Vec::new(),
        }
    }

    pub(super) fn child_key(&self, name: &str) -> String {
        if self.path.is_empty() {
            name.to_string()
        } else {
            format!("{}.{name}", self.path)
        }
    }

    pub(super) fn field(&mut self, name: &'static str) -> Field<'a> {
        self.known.push(name);
        let value = self.map.and_then(|m| m.get(name)).filter(|v| !is_blank(v));
        Field {
            key: self.child_key(name),
            value,
            quiet: self.map.is_none(),
        }
    }

    /// Reports every key that was not looked at as an unknown-key warning.
    pub(super) fn finish(self, ck: &mut Checker<'_>) {
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

pub(super) fn is_blank(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::String(s) => s.trim().is_empty(),
        _ => false,
    }
}

/// The kind of a value, for messages that must not show the value itself.
pub(super) fn type_name(v: &Value) -> &'static str {
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

pub(super) fn is_http_url(s: &str) -> bool {
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
    pub(super) fn problem(&mut self, key: &str, message: impl Into<String>) {
        self.problems.push(ConfigProblem::new(key, message));
    }

    pub(super) fn warn(&mut self, key: &str, message: impl Into<String>) {
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
    pub(super) fn section<'a>(&mut self, f: Field<'a>) -> Table<'a> {
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

    pub(super) fn string(&mut self, f: &Field<'_>) -> Option<String> {
        match f.value? {
            Value::String(s) => Some(s.trim().to_string()),
            other => {
                let message = format!("expected a string, got {}", type_name(other));
                self.problem(&f.key, message);
                None
            }
        }
    }

    /// `true` or `false` (from the environment, the words).
    pub(super) fn boolean(&mut self, f: &Field<'_>, default: bool) -> bool {
        match f.value {
            None => default,
            Some(Value::Bool(b)) => *b,
            Some(Value::String(s)) if s.trim() == "true" => true,
            Some(Value::String(s)) if s.trim() == "false" => false,
            Some(other) => {
                let message = format!("expected true or false, got {}", describe(other));
                self.problem(&f.key, message);
                default
            }
        }
    }

    /// A list of strings; from the environment, a comma list `a,b`.
    pub(super) fn string_list(&mut self, f: &Field<'_>) -> Vec<String> {
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

    pub(super) fn required_string(&mut self, f: &Field<'_>) -> String {
        if f.value.is_none() {
            self.missing(f);
        }
        self.string(f).unwrap_or_default()
    }

    /// Never puts the value into a message: not when it has the wrong type either.
    pub(super) fn secret(&mut self, f: &Field<'_>) -> Option<Secret> {
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

    pub(super) fn required_secret(&mut self, f: &Field<'_>) -> Secret {
        if f.value.is_none() {
            self.missing(f);
        }
        self.secret(f).unwrap_or_default()
    }

    /// An integer within `min..=max`, given as a TOML integer or a string of digits.
    pub(super) fn integer(
        &mut self,
        key: &str,
        v: &Value,
        min: u64,
        max: u64,
        expected: &str,
    ) -> Option<u64> {
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

    pub(super) fn port(&mut self, f: &Field<'_>, default: u16) -> u16 {
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

    /// A CRM user id: retailCRM's positive integers, or a GUID (Creatio's Contact Ids).
    pub(super) fn user_id(&mut self, key: &str, v: &Value) -> Option<CrmId> {
        if let Value::String(s) = v {
            if crate::ids::is_guid(s.trim()) {
                return CrmId::new(s);
            }
            if s.trim().parse::<u64>().is_err() {
                self.problem(
                    key,
                    format!("expected a CRM user id: a positive integer (retailCRM) or a GUID (Creatio), got {s:?}"),
                );
                return None;
            }
        }
        self.integer(
            key,
            v,
            1,
            u64::MAX,
            "expected a CRM user id (positive integer)",
        )
        .map(CrmId::from)
    }

    /// A positive rate (requests per second), integer or decimal.
    pub(super) fn rate(&mut self, f: &Field<'_>, default: f64) -> f64 {
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

    pub(super) fn duration(
        &mut self,
        f: &Field<'_>,
        default: Duration,
        allow_zero: bool,
    ) -> Duration {
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
    pub(super) fn choice<T: Copy>(
        &mut self,
        f: &Field<'_>,
        options: &[(&str, T)],
        default: T,
    ) -> T {
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
    pub(super) fn kind<T: Copy>(
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
