//! What `check-config` prints when the file is good: [`Config::summary`], a few lines an
//! administrator can compare with what was meant, and never a secret (a database
//! password in the store URL is masked by [`redact_url_password`]).

use super::types::{Config, CrmKind, PbxKind};
use std::time::Duration;

/// `scheme://user:password@host/…` → `scheme://user:***@host/…`.
pub fn redact_url_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _password)) => format!("{scheme}://{user}:***@{host}{path}"),
            None => url.to_string(),
        },
        None => url.to_string(),
    }
}

/// A duration as the configuration would write it: whole days as days (humantime
/// would say "2months 29days 2h 52m 48s" for 90 days).
fn human_duration(d: Duration) -> String {
    const DAY: u64 = 86_400;
    if d.as_secs() >= DAY && d.as_secs().is_multiple_of(DAY) && d.subsec_nanos() == 0 {
        format!("{}days", d.as_secs() / DAY)
    } else {
        humantime::format_duration(d).to_string()
    }
}

impl Config {
    /// A short human summary for `check-config`; never contains a secret. Warnings are
    /// not included (see [`Config::warnings`]).
    pub fn summary(&self) -> String {
        let mut lines = Vec::new();
        lines.push(format!("store: {}", redact_url_password(&self.store.url)));
        lines.push(format!(
            "http: listening on {}, reachable by the CRM as {}; recording links valid {}, a recording not on disk yet waited for {} after the call",
            self.http.listen,
            self.http.public_url,
            human_duration(self.http.link_ttl),
            human_duration(self.http.recording_wait)
        ));
        for pbx in &self.pbx {
            let login = match pbx.kind {
                PbxKind::Asterisk => format!("AMI user {:?}", pbx.username),
                PbxKind::FreeSwitch => "the event socket's password".to_string(),
            };
            lines.push(format!(
                "pbx {:?}: {} at {}:{} with {login}, recordings in {}",
                pbx.name,
                pbx.kind,
                pbx.host,
                pbx.port,
                pbx.recordings_dir.display()
            ));
        }
        let site = match &self.crm.site {
            Some(site) => format!(", site {site:?}"),
            None => String::new(),
        };
        lines.push(format!("crm: {} at {}{site}", self.crm.kind, self.crm.url));
        if self.crm.kind != CrmKind::RetailCrm {
            // Who callbridge logs in as; never the password or the client secret.
            let login = match (&self.crm.login, &self.crm.client_id) {
                (Some(user), _) => format!("forms login as {user:?}"),
                (None, Some(client)) => format!(
                    "OAuth 2.0 client {client:?} at {}/connect/token",
                    self.crm.identity_url.as_deref().unwrap_or(&self.crm.url)
                ),
                (None, None) => "no login".to_string(),
            };
            let queue = match &self.creatio.missed_calls_queue {
                Some(q) => format!("missed calls queued in {q:?}"),
                None => "missed calls not queued".to_string(),
            };
            lines.push(format!(
                "creatio: {login}, OData at {}; cases from {:?} of category {:?}; numbers matched on their last {} digits, then in full; {queue}",
                self.crm.odata_path,
                self.creatio.case_origin,
                self.creatio.case_category,
                self.creatio.search_number_length
            ));
        }
        lines.push(format!(
            "delivery: {} requests/s ({}/s telephony), {} calls at a time, dead-lettered after {}",
            self.crm.rate_limit_per_sec,
            self.crm.telephony_rate_limit_per_sec,
            self.crm.concurrency,
            humantime::format_duration(self.crm.give_up_after)
        ));
        let seniors = if self.employees.senior.is_empty() {
            "none".to_string()
        } else {
            let ids: Vec<String> = self
                .employees
                .senior
                .iter()
                .map(|id| id.to_string())
                .collect();
            ids.join(", ")
        };
        lines.push(format!(
            "employees: {} extension(s) mapped to CRM users; senior managers: {seniors}",
            self.employees.extensions.len()
        ));
        lines.push(format!(
            "calls create CRM records on: {}",
            self.matrix.create_on
        ));
        if self.panel.enabled {
            lines.push(format!(
                "panel: on at {}/panel (links: callbridge panel-link){}",
                self.http.public_url,
                if self.http.link_secret.is_empty() {
                    "; set http.link_secret first: links are signed with it"
                } else {
                    ""
                }
            ));
        }
        lines.push(format!("log: {} ({})", self.log.level, self.log.format));
        lines.join("\n")
    }
}
