//! Creatio's keys: both logins, the `[creatio]` section, Contact Ids as employees, and
//! the password and client secret kept out of everything printed.

use super::*;

const PBX: &str = r#"
[[pbx]]
name = "office"
kind = "asterisk"
host = "10.0.0.5"
username = "callbridge"
secret = "ami-pass"
"#;

const ANNA: &str = "a1b2c3d4-0000-4000-8000-000000000101";
const SENIOR: &str = "a1b2c3d4-0000-4000-8000-000000000109";

fn creatio(crm_keys: &str, rest: &str) -> String {
    format!(
        "{PBX}\n[crm]\nkind = \"creatio\"\nurl = \"https://example.creatio.com/\"\n{crm_keys}\n{rest}\n"
    )
}

const FORMS: &str = "login = \"callbridge\"\npassword = \"Pa55-forms-x1\"";
const OAUTH: &str = "client_id = \"cb-client\"\nclient_secret = \"OAuthS3cret-z8\"\nidentity_url = \"https://example-is.creatio.com/\"";

#[test]
fn a_forms_login_with_the_creatio_section_and_contact_ids_is_read() {
    let text = creatio(
        FORMS,
        &format!(
            "[creatio]\nsearch_number_length = 10\ncase_origin = \"Звонок\"\ncase_category = \"Incident\"\nmissed_calls_queue = \"Missed calls\"\n[employees]\nsenior = [\"{SENIOR}\"]\n[employees.extensions]\n\"101\" = \"{ANNA}\""
        ),
    );
    let cfg = with_env(&text, &[]).unwrap();
    assert_eq!(cfg.crm.kind, CrmKind::Creatio);
    assert_eq!(cfg.crm.url, "https://example.creatio.com");
    assert_eq!(cfg.crm.login.as_deref(), Some("callbridge"));
    assert_eq!(
        cfg.crm.password.as_ref().map(Secret::expose),
        Some("Pa55-forms-x1")
    );
    assert_eq!(cfg.crm.odata_path, "/0/odata");
    assert_eq!(cfg.creatio.search_number_length, 10);
    assert_eq!(cfg.creatio.case_origin, "Звонок");
    assert_eq!(cfg.creatio.case_category, "Incident");
    assert_eq!(
        cfg.creatio.missed_calls_queue.as_deref(),
        Some("Missed calls")
    );
    assert_eq!(
        cfg.employees.extensions.get("101"),
        CrmId::new(ANNA).as_ref()
    );
    assert_eq!(cfg.employees.senior, vec![CrmId::new(SENIOR).unwrap()]);
    assert_eq!(cfg.crm.rate_limit_per_sec, 10.0);
    let warned: Vec<String> = warnings(&cfg)
        .into_iter()
        .filter(|w| !w.starts_with("http.link_secret"))
        .collect();
    assert!(warned.is_empty(), "{warned:?}");
}

#[test]
fn an_oauth_client_and_bpmsoft_with_the_net8_odata_path_are_read() {
    let text = format!(
        "{PBX}\n[crm]\nkind = \"bpmsoft\"\nurl = \"https://bpm.example.ru\"\nodata_path = \"/odata/\"\n{OAUTH}\n"
    );
    let cfg = with_env(&text, &[]).unwrap();
    assert_eq!(cfg.crm.kind, CrmKind::BpmSoft);
    assert_eq!(cfg.crm.client_id.as_deref(), Some("cb-client"));
    assert_eq!(
        cfg.crm.identity_url.as_deref(),
        Some("https://example-is.creatio.com")
    );
    assert_eq!(cfg.crm.odata_path, "/odata");
    assert_eq!(cfg.creatio.search_number_length, 7);
    assert_eq!(cfg.creatio.case_origin, "Call");
    assert_eq!(cfg.creatio.missed_calls_queue, None);
}

#[test]
fn each_creatio_mistake_is_one_line_naming_the_key() {
    let cases: Vec<(String, &str)> = vec![
        (
            creatio("", ""),
            "crm.login: missing: Creatio needs login and password (forms login), or client_id, client_secret and identity_url (OAuth 2.0)",
        ),
        (
            creatio("login = \"callbridge\"", ""),
            "crm.password: missing: the password of crm.login",
        ),
        (
            creatio(&format!("{FORMS}\n{OAUTH}"), ""),
            "crm.login: set either login and password (forms login) or client_id, client_secret and identity_url (OAuth 2.0), not both",
        ),
        (
            creatio("client_id = \"cb\"\nclient_secret = \"s\"", ""),
            "crm.identity_url: missing: OAuth 2.0 needs client_id, client_secret and identity_url",
        ),
        (
            creatio(&format!("{FORMS}\nodata_path = \"odata\""), ""),
            "crm.odata_path: expected a path under crm.url like \"/0/odata\" or \"/odata\", got \"odata\"",
        ),
        (
            creatio(FORMS, "[creatio]\nsearch_number_length = 50"),
            "creatio.search_number_length: expected a number of digits between 3 and 20 (Creatio's SearchNumberLength, 7 by default), got 50",
        ),
        (
            creatio(FORMS, "[employees.extensions]\n\"101\" = 7"),
            "employees.extensions.\"101\": Creatio's owners are contacts: expected a Contact Id (a GUID like \"a1b2c3d4-0000-4000-8000-000000000001\"), got 7",
        ),
        (
            creatio(FORMS, "[employees]\nsenior = [\"a1b2c3d4\"]"),
            "employees.senior[0]: expected a CRM user id: a positive integer (retailCRM) or a GUID (Creatio), got \"a1b2c3d4\"",
        ),
        (
            minimal_with(&format!("[employees.extensions]\n\"101\" = \"{ANNA}\"")),
            "employees.extensions.\"101\": expected a CRM user id (positive integer)",
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
fn creatio_keys_on_retailcrm_are_warned_about_not_used() {
    let cfg = with_env(&minimal_with("[creatio]\ncase_origin = \"Call\""), &[]).unwrap();
    assert!(
        warnings(&cfg).contains(
            &"creatio: read only when crm.kind is \"creatio\" or \"bpmsoft\"".to_string()
        ),
        "{:?}",
        warnings(&cfg)
    );
}

#[test]
fn the_password_and_client_secret_never_appear_in_what_is_printed() {
    let forms = with_env(
        &creatio(FORMS, "[creatio]\nmissed_calls_queue = \"Missed calls\""),
        &[],
    )
    .unwrap();
    let summary = forms.summary();
    assert!(
        summary.contains("forms login as \"callbridge\""),
        "{summary}"
    );
    assert!(
        summary.contains("missed calls queued in \"Missed calls\""),
        "{summary}"
    );
    let oauth = with_env(
        &creatio(OAUTH, ""),
        &[("CALLBRIDGE__CRM__CLIENT_SECRET", "EnvOAuthS3cret-k2")],
    )
    .unwrap();
    assert_eq!(
        oauth.crm.client_secret.as_ref().map(Secret::expose),
        Some("EnvOAuthS3cret-k2")
    );
    assert!(oauth.summary().contains(
        "OAuth 2.0 client \"cb-client\" at https://example-is.creatio.com/connect/token"
    ));
    let broken = errors(&creatio(
        &format!("{FORMS}\n{OAUTH}\nodata_path = \"x\""),
        "",
    ));
    for printed in [
        summary,
        oauth.summary(),
        format!("{forms:?}"),
        format!("{oauth:?}"),
        broken.join("\n"),
    ] {
        for secret in ["Pa55-forms-x1", "OAuthS3cret-z8", "EnvOAuthS3cret-k2"] {
            assert!(!printed.contains(secret), "{secret} printed in: {printed}");
        }
    }
}
