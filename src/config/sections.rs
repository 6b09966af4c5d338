//! The merged tree read into a [`Config`], one section of `callbridge.toml` at a time:
//! which keys each section has, what an absent key means, and the checks that go beyond
//! a key's type (a host given with a port, a CRM URL with a query, two PBXs of one name).

use super::checker::{is_blank, is_http_url, type_name, Checker, Field, Table};
use super::defaults::*;
use super::env::EnvOverride;
use super::problems::{ConfigErrors, ConfigProblem};
use super::summary::redact_url_password;
use super::types::{
    Config, CrmConfig, CrmKind, DaemonConfig, EmployeesConfig, HttpConfig, LogConfig, LogFormat,
    MatrixConfig, PanelConfig, PbxConfig, PbxKind, Secret, StoreConfig,
};
use crate::call::{CampaignVariables, ExtensionRange};
use crate::ids::CrmId;
use crate::matrix::CreateOn;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::PathBuf;

pub(super) fn check(
    tree: &Value,
    env: &[EnvOverride],
    env_problems: Vec<ConfigProblem>,
) -> Result<Config, ConfigErrors> {
    let mut ck = Checker {
        problems: env_problems,
        warnings: Vec::new(),
        env,
    };
    let mut root = Table::new("", tree.as_object());
    let store = read_store(&mut ck, root.field("store"));
    let http = read_http(&mut ck, root.field("http"));
    let pbx = read_pbxs(&mut ck, root.field("pbx"));
    let crm = read_crm(&mut ck, root.field("crm"));
    let creatio = super::creatio::read_creatio(&mut ck, root.field("creatio"), crm.kind);
    let employees = read_employees(&mut ck, root.field("employees"));
    super::creatio::check_employee_ids(&mut ck, crm.kind, &employees);
    let matrix = read_matrix(&mut ck, root.field("matrix"));
    let panel = read_panel(&mut ck, root.field("panel"));
    let log = read_log(&mut ck, root.field("log"));
    let daemon = read_daemon(&mut ck, root.field("daemon"));
    root.finish(&mut ck);

    if !ck.problems.is_empty() {
        return Err(ConfigErrors(ck.problems));
    }
    Ok(Config {
        store,
        http,
        pbx,
        crm,
        creatio,
        employees,
        matrix,
        panel,
        log,
        daemon,
        warnings: ck.warnings,
    })
}

fn read_store(ck: &mut Checker<'_>, f: Field<'_>) -> StoreConfig {
    let mut t = ck.section(f);
    let f = t.field("url");
    let url = match ck.string(&f) {
        Some(url) => {
            check_store_url(ck, &f.key, &url);
            url
        }
        None => DEFAULT_STORE_URL.to_string(),
    };
    t.finish(ck);
    StoreConfig { url }
}

pub(super) fn check_store_url(ck: &mut Checker<'_>, key: &str, url: &str) {
    let message = match url.split_once(':') {
        Some(("sqlite", _)) => return,
        Some(("postgres" | "postgresql", rest)) if rest.starts_with("//") => return,
        Some((scheme, rest)) if rest.starts_with("//") => {
            format!("unsupported scheme {scheme:?}; expected sqlite:// or postgres://")
        }
        _ => format!(
            "not a database URL {}; expected sqlite://FILE or postgres://USER@HOST/DB, e.g. {DEFAULT_STORE_URL:?}",
            redact_url_password(url)
        ),
    };
    ck.problem(key, message);
}

fn read_http(ck: &mut Checker<'_>, f: Field<'_>) -> HttpConfig {
    let mut t = ck.section(f);

    let f = t.field("listen");
    let listen = match ck.string(&f) {
        Some(s) => s.parse::<SocketAddr>().unwrap_or_else(|_| {
            ck.problem(
                &f.key,
                format!("not a socket address {s:?}; expected IP:PORT like \"127.0.0.1:8089\""),
            );
            default_http_listen()
        }),
        None => default_http_listen(),
    };

    let f = t.field("public_url");
    let public_url = match ck.string(&f) {
        Some(s) if is_http_url(&s) => s.trim_end_matches('/').to_string(),
        Some(s) => {
            ck.problem(&f.key, format!("not an http(s) URL: {s:?}"));
            s
        }
        None => {
            let url = format!("http://{listen}");
            if f.value.is_none() && listen.ip().is_unspecified() {
                ck.warn(
                    &f.key,
                    format!("not set, and the default {url:?} cannot be reached by the CRM; set the address the CRM should use"),
                );
            }
            url
        }
    };

    let f = t.field("link_secret");
    let link_secret = match ck.secret(&f) {
        Some(secret) => secret,
        None => {
            if f.value.is_none() {
                ck.warn(
                    &f.key,
                    "not set; recording links are signed with a random key and stop working when callbridge restarts (set a long random string)",
                );
            }
            Secret::default()
        }
    };
    let link_ttl = ck.duration(&t.field("link_ttl"), DEFAULT_LINK_TTL, false);
    let recording_wait = ck.duration(&t.field("recording_wait"), DEFAULT_RECORDING_WAIT, true);
    // Transcoding is not built: say so rather than serve another format than asked.
    let f = t.field("recording_format");
    if let Some(format) = ck.string(&f) {
        if format != "original" {
            ck.problem(
                &f.key,
                format!("{format:?} is not supported: recordings are served as the PBX wrote them (set the format in MixMonitor or record_session); remove the key or set \"original\""),
            );
        }
    }

    t.finish(ck);
    HttpConfig {
        listen,
        public_url,
        link_secret,
        link_ttl,
        recording_wait,
    }
}

fn read_pbxs(ck: &mut Checker<'_>, f: Field<'_>) -> Vec<PbxConfig> {
    let items = match f.value {
        Some(Value::Array(items)) if !items.is_empty() => items,
        None | Some(Value::Array(_)) => {
            ck.problem(&f.key, "missing; add at least one [[pbx]] section");
            return Vec::new();
        }
        Some(Value::Object(_)) => {
            ck.problem(
                &f.key,
                "expected [[pbx]] sections (an array of tables), got a table; write [[pbx]] with double brackets",
            );
            return Vec::new();
        }
        Some(other) => {
            let message = format!(
                "expected [[pbx]] sections (an array of tables), got {}",
                type_name(other)
            );
            ck.problem(&f.key, message);
            return Vec::new();
        }
    };

    let mut pbxs = Vec::new();
    let mut names = BTreeSet::new();
    for (i, item) in items.iter().enumerate() {
        let key = format!("{}[{i}]", f.key);
        match item {
            Value::Object(map) => {
                let pbx = read_pbx(ck, Table::new(key.as_str(), Some(map)));
                if !pbx.name.is_empty() && !names.insert(pbx.name.clone()) {
                    ck.problem(
                        &format!("{key}.name"),
                        format!("duplicate name {:?}", pbx.name),
                    );
                }
                pbxs.push(pbx);
            }
            Value::Null => ck.problem(
                &key,
                "missing; [[pbx]] sections are numbered from 0 in file order, without gaps",
            ),
            other => {
                let message = format!("expected a [[pbx]] table, got {}", type_name(other));
                ck.problem(&key, message);
            }
        }
    }
    pbxs
}

fn read_pbx(ck: &mut Checker<'_>, mut t: Table<'_>) -> PbxConfig {
    let name = ck.required_string(&t.field("name"));
    let kind = ck.kind(
        &t.field("kind"),
        &[
            ("asterisk", PbxKind::Asterisk),
            ("freeswitch", PbxKind::FreeSwitch),
        ],
        &[],
        PbxKind::Asterisk,
    );

    let f = t.field("host");
    let host = ck.required_string(&f);
    if host.contains("://") || host.contains('/') || host.contains(char::is_whitespace) {
        ck.problem(
            &f.key,
            format!("expected a host name or IP address, got {host:?}"),
        );
    } else if host.parse::<SocketAddr>().is_ok() {
        let port_key = t.child_key("port");
        ck.problem(
            &f.key,
            format!("expected a host name or IP address without a port, got {host:?}; put the port in {port_key}"),
        );
    }

    let port = ck.port(
        &t.field("port"),
        match kind {
            PbxKind::Asterisk => DEFAULT_AMI_PORT,
            PbxKind::FreeSwitch => DEFAULT_ESL_PORT,
        },
    );
    // The event socket knows only a password; an AMI login has a user name too.
    let username = match kind {
        PbxKind::Asterisk => ck.required_string(&t.field("username")),
        PbxKind::FreeSwitch => ck.string(&t.field("username")).unwrap_or_default(),
    };
    let secret = ck.required_secret(&t.field("secret"));
    let recordings_dir = ck
        .string(&t.field("recordings_dir"))
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(match kind {
                PbxKind::Asterisk => DEFAULT_RECORDINGS_DIR,
                PbxKind::FreeSwitch => DEFAULT_FS_RECORDINGS_DIR,
            })
        });
    let ping_interval = ck.duration(&t.field("ping_interval"), DEFAULT_PING_INTERVAL, false);
    let ping_timeout = ck.duration(&t.field("ping_timeout"), DEFAULT_PING_TIMEOUT, false);
    let connect_timeout = ck.duration(&t.field("connect_timeout"), DEFAULT_CONNECT_TIMEOUT, false);
    let reconnect_max_delay = ck.duration(
        &t.field("reconnect_max_delay"),
        DEFAULT_RECONNECT_MAX_DELAY,
        false,
    );
    let f = t.field("internal_extensions");
    let internal_extensions = ck
        .string_list(&f)
        .into_iter()
        .enumerate()
        .filter_map(|(i, item)| {
            let parsed = ExtensionRange::parse(&item);
            if parsed.is_none() {
                ck.problem(
                    &format!("{}[{i}]", f.key),
                    format!(
                        "expected an extension number or a range like \"100-199\", got {item:?}"
                    ),
                );
            }
            parsed
        })
        .collect();
    let trunk_contexts = ck.string_list(&t.field("trunk_contexts"));
    let voicemail_dir = ck
        .string(&t.field("voicemail_dir"))
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(match kind {
                PbxKind::Asterisk => DEFAULT_VOICEMAIL_DIR,
                PbxKind::FreeSwitch => DEFAULT_FS_VOICEMAIL_DIR,
            })
        });
    let stale_call_timeout = ck.duration(
        &t.field("stale_call_timeout"),
        DEFAULT_STALE_CALL_TIMEOUT,
        false,
    );
    let resync_interval = ck.duration(&t.field("resync_interval"), DEFAULT_RESYNC_INTERVAL, false);
    let campaign_variables = read_campaign_variables(ck, t.field("utm_variables"));
    t.finish(ck);

    PbxConfig {
        name,
        kind,
        host,
        port,
        username,
        secret,
        recordings_dir,
        ping_interval,
        ping_timeout,
        connect_timeout,
        reconnect_max_delay,
        internal_extensions,
        trunk_contexts,
        voicemail_dir,
        stale_call_timeout,
        resync_interval,
        campaign_variables,
    }
}

/// `utm_variables = { source = "UTM_SOURCE", medium = …, campaign = …, content = …,
/// term = … }`: the channel variables the dialplan puts campaign data in.
fn read_campaign_variables(ck: &mut Checker<'_>, f: Field<'_>) -> CampaignVariables {
    let mut t = ck.section(f);
    let defaults = CampaignVariables::default();
    // An empty name reads as not set: the default stays.
    let mut name = |ck: &mut Checker<'_>, key: &'static str, default: String| {
        ck.string(&t.field(key))
            .filter(|v| !v.is_empty())
            .unwrap_or(default)
    };
    let variables = CampaignVariables {
        source: name(ck, "source", defaults.source),
        medium: name(ck, "medium", defaults.medium),
        campaign: name(ck, "campaign", defaults.campaign),
        content: name(ck, "content", defaults.content),
        term: name(ck, "term", defaults.term),
    };
    t.finish(ck);
    variables
}

fn read_crm(ck: &mut Checker<'_>, f: Field<'_>) -> CrmConfig {
    if f.value.is_none() {
        ck.problem(
            &f.key,
            "missing; add a [crm] section with kind, url and api_key",
        );
    }
    let mut t = ck.section(f);
    let kind = ck.kind(
        &t.field("kind"),
        &[
            ("retailcrm", CrmKind::RetailCrm),
            ("creatio", CrmKind::Creatio),
            ("bpmsoft", CrmKind::BpmSoft),
        ],
        &[],
        CrmKind::RetailCrm,
    );

    let f = t.field("url");
    let mut url = ck.required_string(&f);
    if !url.is_empty() {
        if !is_http_url(&url) {
            ck.problem(&f.key, format!("not an http(s) URL: {url:?}"));
        } else if url.contains('?') {
            // Don't echo it: someone may have pasted `?apiKey=…`.
            ck.problem(
                &f.key,
                "must be the account's base URL without a query (put the key in crm.api_key)",
            );
        } else {
            url = url.trim_end_matches('/').to_string();
            if kind == CrmKind::RetailCrm && (url.contains("/api/") || url.ends_with("/api")) {
                ck.warn(
                    &f.key,
                    "should be the account's base URL like \"https://example.retailcrm.ru\"; /api/v5/… is added by callbridge",
                );
            }
        }
    }

    let f = t.field("api_key");
    let api_key = if kind == CrmKind::RetailCrm {
        ck.required_secret(&f)
    } else {
        if f.value.is_some() {
            ck.warn(&f.key, "read only when crm.kind is \"retailcrm\"; Creatio logs in with crm.login or crm.client_id");
        }
        Secret::default()
    };
    let creatio_login = super::creatio::read_login(ck, &mut t, kind);
    let site = ck.string(&t.field("site"));
    let timeout = ck.duration(&t.field("timeout"), DEFAULT_CRM_TIMEOUT, false);
    // retailCRM allows 10 requests a second per key; Creatio documents no limit, and
    // 10 a second keeps an integration user well inside its plan's daily calls.
    let rate_limit_per_sec = ck.rate(&t.field("rate_limit_per_sec"), DEFAULT_CRM_RATE_LIMIT);
    let telephony_rate_limit_per_sec = ck.rate(
        &t.field("telephony_rate_limit_per_sec"),
        DEFAULT_CRM_TELEPHONY_RATE_LIMIT,
    );
    let give_up_after = ck.duration(&t.field("give_up_after"), DEFAULT_GIVE_UP_AFTER, false);
    let f = t.field("concurrency");
    let concurrency = match f.value {
        None => DEFAULT_CRM_CONCURRENCY,
        Some(v) => ck
            .integer(&f.key, v, 1, 1024, "expected an integer between 1 and 1024")
            .map_or(DEFAULT_CRM_CONCURRENCY, |n| n as usize),
    };
    let f = t.field("default_region");
    let default_region = ck.string(&f).unwrap_or_else(|| "RU".to_string());
    if crate::phone::PhoneNormalizer::new(&default_region).is_err() {
        ck.problem(
            &f.key,
            format!("unknown region {default_region:?}; expected an ISO 3166 code like \"RU\""),
        );
    }
    let order_method = ck
        .string(&t.field("order_method"))
        .unwrap_or_else(|| "phone".to_string());
    let f = t.field("final_status_groups");
    let mut final_status_groups = ck.string_list(&f);
    if f.value.is_none() {
        final_status_groups = vec!["complete".to_string(), "cancel".to_string()];
    }
    let module_code = ck.string(&t.field("module_code"));
    let directory_refresh = ck.duration(
        &t.field("directory_refresh"),
        DEFAULT_DIRECTORY_REFRESH,
        false,
    );
    t.finish(ck);
    CrmConfig {
        kind,
        url,
        api_key,
        login: creatio_login.login,
        password: creatio_login.password,
        client_id: creatio_login.client_id,
        client_secret: creatio_login.client_secret,
        identity_url: creatio_login.identity_url,
        odata_path: creatio_login.odata_path,
        site,
        timeout,
        rate_limit_per_sec,
        telephony_rate_limit_per_sec,
        give_up_after,
        concurrency,
        default_region,
        order_method,
        final_status_groups,
        module_code,
        directory_refresh,
    }
}

fn read_employees(ck: &mut Checker<'_>, f: Field<'_>) -> EmployeesConfig {
    let mut t = ck.section(f);
    let senior = read_senior(ck, &t.field("senior"));

    let f = t.field("extensions");
    let mut extensions = BTreeMap::new();
    match f.value {
        None => {}
        Some(Value::Object(map)) => {
            for (ext, v) in map {
                let key = format!("{}.{ext:?}", f.key);
                if is_blank(v) {
                    continue; // e.g. CALLBRIDGE__EMPLOYEES__EXTENSIONS__101= : not mapped
                }
                if ext.trim().is_empty() {
                    ck.problem(&key, "empty extension number");
                } else if let Some(id) = ck.user_id(&key, v) {
                    extensions.insert(ext.clone(), id);
                }
            }
        }
        Some(other) => {
            let message = format!(
                "expected a table of extension = CRM user id, like \"101\" = 3; got {}",
                type_name(other)
            );
            ck.problem(&f.key, message);
        }
    }
    t.finish(ck);
    EmployeesConfig { senior, extensions }
}

fn read_senior(ck: &mut Checker<'_>, f: &Field<'_>) -> Vec<CrmId> {
    let mut ids: Vec<CrmId> = Vec::new();
    match f.value {
        None => {}
        Some(Value::Array(items)) => {
            for (i, v) in items.iter().enumerate() {
                if is_blank(v) {
                    continue;
                }
                if let Some(id) = ck.user_id(&format!("{}[{i}]", f.key), v) {
                    ids.push(id);
                }
            }
        }
        // From the environment: a comma list "7,8".
        Some(Value::String(s)) => {
            for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                match part.parse::<u64>() {
                    Ok(id) if id > 0 => ids.push(CrmId::from(id)),
                    _ if crate::ids::is_guid(part) => ids.extend(CrmId::new(part)),
                    _ => {
                        ck.problem(
                            &f.key,
                            format!("expected CRM user ids separated by commas, like \"7,8\", got {s:?}"),
                        );
                        return Vec::new();
                    }
                }
            }
        }
        Some(v @ Value::Number(_)) => ids.extend(ck.user_id(&f.key, v)),
        Some(other) => {
            let message = format!(
                "expected a list of CRM user ids like [7, 8], got {}",
                type_name(other)
            );
            ck.problem(&f.key, message);
        }
    }
    let mut seen = BTreeSet::new();
    ids.retain(|id| seen.insert(*id));
    ids
}

fn read_matrix(ck: &mut Checker<'_>, f: Field<'_>) -> MatrixConfig {
    let mut t = ck.section(f);
    let create_on = ck.choice(
        &t.field("create_on"),
        &[("answer", CreateOn::Answer), ("ring", CreateOn::Ring)],
        CreateOn::Answer,
    );
    t.finish(ck);
    MatrixConfig { create_on }
}

fn read_panel(ck: &mut Checker<'_>, f: Field<'_>) -> PanelConfig {
    let mut t = ck.section(f);
    let enabled = ck.boolean(&t.field("enabled"), false);
    t.finish(ck);
    PanelConfig { enabled }
}

fn read_log(ck: &mut Checker<'_>, f: Field<'_>) -> LogConfig {
    let mut t = ck.section(f);
    let level = ck
        .string(&t.field("level"))
        .unwrap_or_else(|| DEFAULT_LOG_LEVEL.to_string());
    let format = ck.choice(
        &t.field("format"),
        &[("text", LogFormat::Text), ("json", LogFormat::Json)],
        LogFormat::Text,
    );
    t.finish(ck);
    LogConfig { level, format }
}

fn read_daemon(ck: &mut Checker<'_>, f: Field<'_>) -> DaemonConfig {
    let mut t = ck.section(f);
    let shutdown_grace = ck.duration(&t.field("shutdown_grace"), DEFAULT_SHUTDOWN_GRACE, true);
    t.finish(ck);
    DaemonConfig { shutdown_grace }
}
