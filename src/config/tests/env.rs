//! `CALLBRIDGE__…` variables over the file: how their names map to keys, and their
//! values checked like the file's.

use super::*;
use crate::ids::CrmId;

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
    assert_eq!(cfg.employees.extensions.get("101"), Some(&CrmId::from(30)));
    assert_eq!(cfg.employees.extensions.get("205"), Some(&CrmId::from(9)));
    assert_eq!(
        cfg.employees.extensions.get("Alice"),
        Some(&CrmId::from(11))
    );
    assert_eq!(cfg.employees.senior, vec![CrmId::from(7), CrmId::from(8)]);
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
    assert_eq!(cfg.employees.senior, vec![CrmId::from(12)]);
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
