//! What a decision reads from Creatio: the contacts with the caller's number, their cases,
//! which case statuses are final, who the employees are and which extension each one's
//! telephony settings name.
//!
//! A number is looked up as Creatio's own call-centre panel does: `SearchNumber` is the
//! number's digits reversed, so `startswith(SearchNumber, <the caller's last N digits
//! reversed>)` finds every communication ending in those N digits (`[creatio]
//! search_number_length`, Creatio's system setting, 7 by default). N digits alone
//! collide (two numbers may share their last 7), so each one found is compared in full
//! (normalized) and only true matches are kept.

use std::collections::HashMap;

use serde_json::Value;
use tracing::debug;

use super::odata::{guid, literal, sortable_date, text};
use super::CreatioCrm;
use crate::crm::{CrmCustomer, CrmError, CrmOrder, ExtensionCodes};
use crate::ids::CrmId;
use crate::phone::{PhoneNormalizer, PhoneNumber};

/// Communications read at most for one number.
const MAX_FOUND: &str = "100";

impl CreatioCrm {
    /// The ids of the records (`owner` column: `ContactId`, `AccountId`) whose
    /// communications in `entity` are `phone`.
    pub(super) async fn owners_of_number(
        &self,
        phone: &PhoneNumber,
        normalizer: &PhoneNormalizer,
        entity: &str,
        owner: &str,
    ) -> Result<Vec<CrmId>, CrmError> {
        let reversed: String = phone.digits().chars().rev().collect();
        let prefix: String = reversed
            .chars()
            .take(self.settings.search_number_length)
            .collect();
        if prefix.is_empty() {
            return Ok(Vec::new());
        }
        let found = self
            .list(
                entity,
                &[
                    (
                        "$filter",
                        format!("startswith(SearchNumber,{})", literal(&prefix)),
                    ),
                    ("$select", format!("Id,{owner},Number")),
                    ("$top", MAX_FOUND.into()),
                ],
            )
            .await?;
        let mut owners = Vec::new();
        for row in &found {
            let Some(number) = text(row, "Number") else {
                continue;
            };
            let same = normalizer
                .normalize(&number)
                .is_ok_and(|n| n.e164() == phone.e164());
            if !same {
                debug!(
                    entity,
                    "a communication shares the last digits only; not the caller"
                );
                continue;
            }
            if let Some(id) = guid(row, owner) {
                if !owners.contains(&id) {
                    owners.push(id);
                }
            }
        }
        Ok(owners)
    }

    /// The contacts with `phone` (the matrix's clients).
    pub(super) async fn contacts_by_phone(
        &self,
        phone: &PhoneNumber,
        normalizer: &PhoneNormalizer,
    ) -> Result<Vec<CrmCustomer>, CrmError> {
        let ids = self
            .owners_of_number(phone, normalizer, "ContactCommunication", "ContactId")
            .await?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let filter = ids
            .iter()
            .map(|id| format!("Id eq {id}"))
            .collect::<Vec<_>>()
            .join(" or ");
        let contacts = self
            .list(
                "Contact",
                &[
                    ("$filter", filter),
                    ("$select", "Id,Name,OwnerId,ModifiedOn,CreatedOn".into()),
                    ("$top", MAX_FOUND.into()),
                ],
            )
            .await?;
        Ok(contacts
            .iter()
            .filter_map(|c| {
                Some(CrmCustomer {
                    id: guid(c, "Id")?,
                    name: text(c, "Name").unwrap_or_default(),
                    manager_id: guid(c, "OwnerId"),
                    created_at: text(c, "ModifiedOn")
                        .or_else(|| text(c, "CreatedOn"))
                        .map(|d| sortable_date(&d)),
                })
            })
            .collect())
    }

    /// A contact's cases, the most recently modified first (an open one is what a call
    /// "consults on").
    pub(super) async fn cases_of(&self, contact: CrmId) -> Result<Vec<CrmOrder>, CrmError> {
        let cases = self
            .list(
                "Case",
                &[
                    ("$filter", format!("Contact/Id eq {contact}")),
                    ("$select", "Id,Number,StatusId,OwnerId,ModifiedOn".into()),
                    ("$orderby", "ModifiedOn desc".into()),
                    ("$top", MAX_FOUND.into()),
                ],
            )
            .await?;
        Ok(cases
            .iter()
            .filter_map(|c| {
                Some(CrmOrder {
                    id: guid(c, "Id")?,
                    number: text(c, "Number").unwrap_or_default(),
                    status: text(c, "StatusId").unwrap_or_default(),
                    manager_id: guid(c, "OwnerId"),
                    created_at: text(c, "ModifiedOn")
                        .map(|d| sortable_date(&d))
                        .unwrap_or_default(),
                })
            })
            .collect())
    }

    /// Case status → whether it is final (`CaseStatus.IsFinal`).
    pub(super) async fn final_case_statuses(&self) -> Result<HashMap<String, bool>, CrmError> {
        let statuses = self
            .list("CaseStatus", &[("$select", "Id,IsFinal".into())])
            .await?;
        Ok(statuses
            .iter()
            .filter_map(|s| {
                let id = text(s, "Id")?;
                Some((
                    id,
                    s.get("IsFinal").and_then(Value::as_bool).unwrap_or(false),
                ))
            })
            .collect())
    }

    /// The active users' contacts (Creatio's owners are contacts).
    pub(super) async fn employee_contacts(&self) -> Result<Vec<CrmId>, CrmError> {
        Ok(self.users().await?.into_values().collect())
    }

    /// Active users: `SysAdminUnit` id → its contact.
    async fn users(&self) -> Result<HashMap<CrmId, CrmId>, CrmError> {
        let users = self
            .list(
                "SysAdminUnit",
                &[
                    (
                        "$filter",
                        "SysAdminUnitTypeValue eq 4 and Active eq true".into(),
                    ),
                    ("$select", "Id,ContactId".into()),
                ],
            )
            .await?;
        Ok(users
            .iter()
            .filter_map(|u| Some((guid(u, "Id")?, guid(u, "ContactId")?)))
            .collect())
    }

    /// Extensions from the users' telephony settings (`SysMsgUserSettings.ConnectionParams`,
    /// key `ExtensionName`), each with the user's contact.
    pub(super) async fn telephony_extensions(&self) -> Result<ExtensionCodes, CrmError> {
        let settings = self
            .list(
                "SysMsgUserSettings",
                &[("$select", "UserId,ConnectionParams".into())],
            )
            .await?;
        let users = self.users().await?;
        let mut codes = Vec::new();
        for s in &settings {
            let (Some(user), Some(params)) = (guid(s, "UserId"), text(s, "ConnectionParams"))
            else {
                continue;
            };
            let Some(contact) = users.get(&user) else {
                continue;
            };
            let extension = serde_json::from_str::<Value>(&params)
                .ok()
                .and_then(|p| match p.get("ExtensionName")? {
                    Value::String(s) => Some(s.trim().to_string()),
                    Value::Number(n) => Some(n.to_string()),
                    _ => None,
                })
                .filter(|e| !e.is_empty());
            if let Some(extension) = extension {
                codes.push((extension, *contact));
            }
        }
        Ok(codes)
    }

    /// The account of a contact, or the account whose communications are `phone`.
    pub(super) async fn account_for(
        &self,
        contact: Option<CrmId>,
        phone: Option<&str>,
    ) -> Result<Option<CrmId>, CrmError> {
        if let Some(contact) = contact {
            let found = self
                .list(
                    "Contact",
                    &[
                        ("$filter", format!("Id eq {contact}")),
                        ("$select", "Id,AccountId".into()),
                    ],
                )
                .await?;
            if let Some(account) = found.first().and_then(|c| guid(c, "AccountId")) {
                return Ok(Some(account));
            }
        }
        let Some(Ok(number)) = phone.map(|p| self.normalizer.normalize(p)) else {
            return Ok(None);
        };
        Ok(self
            .owners_of_number(
                &number,
                &self.normalizer,
                "AccountCommunication",
                "AccountId",
            )
            .await?
            .first()
            .copied())
    }
}
