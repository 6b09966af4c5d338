//! Tests of the configuration. Here: the fixtures they share, the example file, the
//! defaults and reading a file; the files of `tests/` take one subject each.

use super::*;
use crate::ids::CrmId;
use crate::matrix::CreateOn;
use std::path::PathBuf;
use std::time::Duration;

mod creatio;
mod env;
mod output;
mod problems;
mod sections;

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
    assert_eq!(cfg.employees.senior, vec![CrmId::from(7)]);
    assert_eq!(cfg.employees.extensions.get("101"), Some(&CrmId::from(3)));
    assert_eq!(cfg.employees.extensions.get("102"), Some(&CrmId::from(4)));
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
