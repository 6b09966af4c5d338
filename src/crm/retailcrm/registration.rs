//! Registers callbridge's telephony integration module in retailCRM at start-up
//! (`[crm] module_code`): `POST /api/v5/integration-modules/{code}/edit`, an upsert.
//! It declares which call events callbridge sends and gives the configured extensions to
//! their users as telephony codes (`additionalCodes`), so that pop-ups sent by extension
//! code reach the right manager. Each edit replaces the module's whole code list, so the
//! full list is always sent; what changed against the module as it was is logged.

use std::collections::BTreeMap;

use serde_json::{json, Value};
use tracing::info;

use super::RetailCrm;
use crate::crm::CrmError;
use crate::ids::CrmId;

/// A small SVG (retailCRM accepts only SVG logos).
const LOGO: &str = "data:image/svg+xml;base64,PHN2ZyB4bWxucz0iaHR0cDovL3d3dy53My5vcmcvMjAwMC9zdmciIHZpZXdCb3g9IjAgMCAyNCAyNCI+PHBhdGggZD0iTTYgMmg0bDIgNS0yLjUgMS41YTExIDExIDAgMCAwIDYgNkwxNyAxMmw1IDJ2NGEyIDIgMCAwIDEtMiAyQTE4IDE4IDAgMCAxIDQgNGEyIDIgMCAwIDEgMi0yIi8+PC9zdmc+";

/// What the registration changed, for the log.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Registered {
    /// The module did not exist before.
    pub created: bool,
    pub codes_added: Vec<(String, CrmId)>,
    pub codes_removed: Vec<(String, CrmId)>,
}

impl RetailCrm {
    /// Creates or updates the module `code` with `codes` (extension → user id);
    /// `base_url` is where callbridge's HTTP side is reachable (`http.public_url`).
    pub async fn register_module(
        &self,
        code: &str,
        base_url: &str,
        codes: &BTreeMap<String, CrmId>,
    ) -> Result<Registered, CrmError> {
        let before = self.module_codes(code).await?;
        let additional: Vec<Value> = codes
            .iter()
            .map(|(ext, user)| json!({"code": ext, "userId": user.to_json()}))
            .collect();
        let module = json!({
            "code": code,
            "integrationCode": code,
            "active": true,
            "name": "callbridge",
            "logo": LOGO,
            "baseUrl": base_url,
            "clientId": code,
            "integrations": {
                "telephony": {
                    "allowEdit": false,
                    "inputEventSupported": true,
                    "outputEventSupported": true,
                    "hangupEventSupported": true,
                    "additionalCodes": additional,
                }
            }
        });
        let path = format!(
            "/api/v5/integration-modules/{}/edit",
            super::path_segment(code)
        );
        self.post_form_fields(&path, &[("integrationModule", module.to_string())])
            .await?;
        let old: Vec<(String, CrmId)> = before.clone().unwrap_or_default();
        let new: Vec<(String, CrmId)> = codes.iter().map(|(e, u)| (e.clone(), *u)).collect();
        let registered = Registered {
            created: before.is_none(),
            codes_added: new.iter().filter(|c| !old.contains(c)).cloned().collect(),
            codes_removed: old.iter().filter(|c| !new.contains(c)).cloned().collect(),
        };
        info!(
            module = code,
            created = registered.created,
            codes = codes.len(),
            added = ?registered.codes_added,
            removed = ?registered.codes_removed,
            "telephony module registered in the CRM"
        );
        Ok(registered)
    }
}
