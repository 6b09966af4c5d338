//! Mistakes as the administrator sees them: one line per problem, naming the key;
//! unknown keys as warnings.

use super::*;

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
            "employees.extensions.\"101\": expected a CRM user id: a positive integer (retailCRM) or a GUID (Creatio), got \"abc\"",
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
            "crm.kind: unknown kind \"amocrm\"; expected \"retailcrm\", \"creatio\" or \"bpmsoft\"",
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
