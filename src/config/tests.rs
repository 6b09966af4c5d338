//! Tests of the configuration: the example file, defaults, one line per problem naming
//! its key, `CALLBRIDGE__…` overrides, and secrets that never reach any output.

use super::*;
use crate::call::ExtensionRange;
use crate::matrix::CreateOn;
use std::path::PathBuf;
use std::time::Duration;

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
    assert!(ExtensionRange::parse("101").is_some_and(|r| r.contains("101") && !r.contains("1010")));
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
    let base_pbx =
        "name = \"office\"\nkind = \"asterisk\"\nhost = \"h\"\nusername = \"u\"\nsecret = \"s\"";
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
            &"pbx[0].Secret: unknown key (ignored); keys are lower-case: \"secret\"".to_string()
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
    let text =
        MINIMAL.replace("api_key = \"crm-key\"", "") + "\n[employees.extensions]\n\"101\" = 3\n";
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
        vec!["pbx[1]: missing; [[pbx]] sections are numbered from 0 in file order, without gaps"]
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
        vec![
            "crm.url: must be the account's base URL without a query (put the key in crm.api_key)"
        ]
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
