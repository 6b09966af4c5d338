//! What is printed about a configuration: the `check-config` summary, and no secret in
//! it, in a problem, a warning or `Debug` output.

use super::*;

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
