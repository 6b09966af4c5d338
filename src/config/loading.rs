//! Where a configuration comes from: the file (or a string), layered by the `config`
//! crate with the `CALLBRIDGE__…` variables over it, then handed to the checker.
//! A TOML syntax error is reported with its line and column but without the line itself,
//! which may hold a secret.

use super::checker::Checker;
use super::defaults::DEFAULT_STORE_URL;
use super::env::{env_overrides, ENV_PREFIX};
use super::problems::{ConfigErrors, ConfigProblem};
use super::sections::{check, check_store_url};
use super::types::Config;
use serde_json::Value;
use std::path::Path;

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
