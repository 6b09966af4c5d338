//! Each section's keys: what they default to, how they are read, and the checks
//! beyond the type.

use super::*;
use crate::call::ExtensionRange;
use crate::ids::CrmId;

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
    assert_eq!(cfg.employees.extensions["0102"], CrmId::from(4));
    assert_eq!(cfg.employees.extensions["Alice"], CrmId::from(5));
}
