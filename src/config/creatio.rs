//! The configuration Creatio (and BPMSoft) needs: how callbridge logs in (`[crm] login`
//! and `password`, or `client_id`, `client_secret` and `identity_url`), where its OData
//! lives, the `[creatio]` section (how calls become its records), and that employees
//! are named by their Contact Ids.

use super::checker::{is_http_url, Checker, Field, Table};
use super::types::{CreatioConfig, CrmKind, EmployeesConfig, Secret};

/// `[crm]`'s Creatio keys, read for every kind (so that none is taken for unknown).
pub(super) struct CreatioLogin {
    pub(super) login: Option<String>,
    pub(super) password: Option<Secret>,
    pub(super) client_id: Option<String>,
    pub(super) client_secret: Option<Secret>,
    pub(super) identity_url: Option<String>,
    pub(super) odata_path: String,
}

/// OData 4 under the application root on .NET Framework installs (`/odata` on .NET 8).
pub(super) const DEFAULT_ODATA_PATH: &str = "/0/odata";

pub(super) fn read_login(ck: &mut Checker<'_>, t: &mut Table<'_>, kind: CrmKind) -> CreatioLogin {
    let creatio = kind != CrmKind::RetailCrm;
    let (f_login, f_password) = (t.field("login"), t.field("password"));
    let (f_id, f_secret, f_identity) = (
        t.field("client_id"),
        t.field("client_secret"),
        t.field("identity_url"),
    );
    let f_odata = t.field("odata_path");
    let login = ck.string(&f_login);
    let password = ck.secret(&f_password);
    let client_id = ck.string(&f_id);
    let client_secret = ck.secret(&f_secret);
    let mut identity_url = ck.string(&f_identity);
    let odata_path = match ck.string(&f_odata) {
        Some(p) if p.starts_with('/') => p.trim_end_matches('/').to_string(),
        Some(p) => {
            ck.problem(
                &f_odata.key,
                format!("expected a path under crm.url like \"/0/odata\" or \"/odata\", got {p:?}"),
            );
            DEFAULT_ODATA_PATH.to_string()
        }
        None => DEFAULT_ODATA_PATH.to_string(),
    };
    if !creatio {
        for f in [
            &f_login,
            &f_password,
            &f_id,
            &f_secret,
            &f_identity,
            &f_odata,
        ] {
            if f.value.is_some() {
                ck.warn(
                    &f.key,
                    "read only when crm.kind is \"creatio\" or \"bpmsoft\"",
                );
            }
        }
    } else {
        if let Some(url) = identity_url.as_mut() {
            if is_http_url(url) {
                *url = url.trim_end_matches('/').to_string();
            } else {
                ck.problem(&f_identity.key, format!("not an http(s) URL: {url:?}"));
            }
        }
        let forms = login.is_some() || password.is_some();
        let oauth = client_id.is_some() || client_secret.is_some() || identity_url.is_some();
        if forms && oauth {
            ck.problem(
                &f_login.key,
                "set either login and password (forms login) or client_id, client_secret and identity_url (OAuth 2.0), not both",
            );
        } else if forms {
            if login.is_none() {
                ck.problem(
                    &f_login.key,
                    "missing: the Creatio user name that goes with crm.password",
                );
            }
            if password.is_none() {
                ck.problem(&f_password.key, "missing: the password of crm.login");
            }
        } else if oauth {
            for (f, missing) in [
                (&f_id, client_id.is_none()),
                (&f_secret, client_secret.is_none()),
                (&f_identity, identity_url.is_none()),
            ] {
                if missing {
                    ck.problem(
                        &f.key,
                        "missing: OAuth 2.0 needs client_id, client_secret and identity_url",
                    );
                }
            }
        } else {
            ck.problem(
                &f_login.key,
                "missing: Creatio needs login and password (forms login), or client_id, client_secret and identity_url (OAuth 2.0)",
            );
        }
    }
    CreatioLogin {
        login,
        password,
        client_id,
        client_secret,
        identity_url,
        odata_path,
    }
}

/// `[creatio]`.
pub(super) fn read_creatio(ck: &mut Checker<'_>, f: Field<'_>, kind: CrmKind) -> CreatioConfig {
    let present = f.value.is_some();
    let key = f.key.clone();
    let mut t = ck.section(f);
    let defaults = CreatioConfig::default();
    let f = t.field("search_number_length");
    let search_number_length = match f.value {
        None => defaults.search_number_length,
        Some(v) => ck
            .integer(&f.key, v, 3, 20, "expected a number of digits between 3 and 20 (Creatio's SearchNumberLength, 7 by default)")
            .map_or(defaults.search_number_length, |n| n as usize),
    };
    let case_origin = ck
        .string(&t.field("case_origin"))
        .unwrap_or(defaults.case_origin);
    let case_category = ck
        .string(&t.field("case_category"))
        .unwrap_or(defaults.case_category);
    let missed_calls_queue = ck.string(&t.field("missed_calls_queue"));
    t.finish(ck);
    if present && kind == CrmKind::RetailCrm {
        ck.warn(
            &key,
            "read only when crm.kind is \"creatio\" or \"bpmsoft\"",
        );
    }
    CreatioConfig {
        search_number_length,
        case_origin,
        case_category,
        missed_calls_queue,
    }
}

/// Employees are named the way the CRM names its users: retailCRM's user ids are
/// numbers; Creatio's owners are contacts, named by their Contact Id (a GUID).
pub(super) fn check_employee_ids(ck: &mut Checker<'_>, kind: CrmKind, employees: &EmployeesConfig) {
    let creatio = kind != CrmKind::RetailCrm;
    let mut check = |key: String, id: &crate::ids::CrmId| {
        if creatio && !id.is_guid() {
            ck.problem(
                &key,
                format!("Creatio's owners are contacts: expected a Contact Id (a GUID like \"a1b2c3d4-0000-4000-8000-000000000001\"), got {id}"),
            );
        } else if !creatio && id.as_u64().is_none() {
            ck.problem(&key, "expected a CRM user id (positive integer)");
        }
    };
    for (i, id) in employees.senior.iter().enumerate() {
        check(format!("employees.senior[{i}]"), id);
    }
    for (ext, id) in &employees.extensions {
        check(format!("employees.extensions.{ext:?}"), id);
    }
}
