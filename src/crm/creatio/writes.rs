//! Carrying out one `CrmAction` in Creatio, exactly once as Creatio sees it. Creatio has
//! no externalId, so each record callbridge makes is found again by what identifies it:
//! a contact by its number's communication (or the marker in its `Notes`), a case by the
//! marker in its `Symptoms`, an activity by the marker in its `Notes`, a call by its
//! `IntegrationId` (records.rs). A reference to a record made by an earlier action
//! (`EntityRef::Step`, or another call's `ExternalId`) is found the same way.

use chrono::Utc;
use reqwest::Method;
use serde_json::{json, Map, Value};
use tracing::debug;

use super::lookups::{CASE_STATUS_NEW, COMMUNICATION_MOBILE};
use super::odata::{guid, literal};
use super::CreatioCrm;
use crate::actions::{CrmAction, Entity, EntityRef, ManagerChange, NewCustomer, NewOrder, Source};
use crate::crm::{CrmError, Delivered};
use crate::ids::CrmId;

/// Creatio caps text columns; a title longer than this is cut (at a character boundary).
const TITLE_CHARS: usize = 250;

/// The marker callbridge writes into a record it makes, to find it again.
pub(super) fn marker(external_id: &str) -> String {
    format!("[callbridge {external_id}]")
}

/// `text` ended by the marker on a line of its own.
pub(super) fn with_marker(text: Option<&str>, external_id: &str) -> String {
    match text {
        Some(t) if !t.is_empty() => format!("{t}\n\n{}", marker(external_id)),
        _ => marker(external_id),
    }
}

/// At most `TITLE_CHARS` characters.
pub(super) fn title(text: &str) -> String {
    text.chars().take(TITLE_CHARS).collect()
}

/// An ISO date Creatio's `DateTimeOffset` columns take.
pub(super) fn iso(at: chrono::DateTime<Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// A record made (or found): what later actions of the call need.
pub(super) fn made(status: u16, id: CrmId, note: Option<String>) -> Delivered {
    Delivered {
        status,
        note,
        result: Some(json!({ "id": id.to_json() })),
    }
}

/// The record a reference names is not in Creatio (yet): its create is still pending or
/// is being retried. Transient, so this action waits for it.
fn not_yet(what: &str, name: &str) -> CrmError {
    CrmError::Rejected {
        status: 503,
        message: format!("the {what} {name} is not in Creatio yet"),
        retry_after: None,
    }
}

impl CreatioCrm {
    /// Sends one action; `Ok` only when Creatio confirmed it. `in_doubt`: an earlier
    /// attempt may have reached Creatio, so look for its record before making one.
    pub(super) async fn send(
        &self,
        action: &CrmAction,
        in_doubt: bool,
    ) -> Result<Delivered, CrmError> {
        match action {
            // Creatio has no public screen-pop endpoint (docs/creatio.md): the pop-up is
            // the operator panel's. Nothing is sent; the outbox records why.
            CrmAction::CallEvent(_) => Ok(Delivered {
                status: 0,
                note: Some(format!(
                    "not sent: {} has no pop-up API; the operator panel shows it",
                    self.flavour
                )),
                result: None,
            }),
            CrmAction::CreateCustomer(c) => self.create_contact(c, in_doubt).await,
            CrmAction::CreateOrder(o) => self.create_case(o, in_doubt).await,
            CrmAction::CreateTask(t) => self.create_activity(t, in_doubt).await,
            CrmAction::SetManager(m) => self.set_owner(m).await,
            CrmAction::CallHistory(r) => self.record_call(r, in_doubt).await,
            CrmAction::Decide(_) => Err(CrmError::Rejected {
                status: 0,
                message: "a matrix decision is not a CRM request".into(),
                retry_after: None,
            }),
        }
    }

    /// A new contact with a Mobile communication holding the number, unless Creatio
    /// already has a contact with that number (made by an earlier attempt, by another
    /// call, or by an operator since the decision): never a second one.
    async fn create_contact(&self, c: &NewCustomer, in_doubt: bool) -> Result<Delivered, CrmError> {
        if let Some(id) = self.contact_with_number(&c.phone).await? {
            return Ok(made(
                200,
                id,
                Some(format!("contact with {} already existed", c.phone)),
            ));
        }
        // Made by an attempt whose communication was not saved: found by its marker.
        let earlier = if in_doubt {
            self.find_marked("Contact", "Notes", &c.external_id).await?
        } else {
            None
        };
        let (status, id) = match earlier {
            Some(id) => (200, id),
            None => {
                let mut m = Map::new();
                m.insert(
                    "Name".into(),
                    json!(c.first_name.as_deref().unwrap_or(&c.phone)),
                );
                if let Some(owner) = c.manager_id {
                    m.insert("OwnerId".into(), owner.to_json());
                }
                if let Some(account) = self.account_for(None, Some(&c.phone)).await? {
                    m.insert("AccountId".into(), account.to_json());
                }
                let about = format!(
                    "Made by callbridge for a call from {}.{}",
                    c.phone,
                    c.source.as_ref().map(source_text).unwrap_or_default()
                );
                m.insert(
                    "Notes".into(),
                    json!(with_marker(Some(&about), &c.external_id)),
                );
                let answer = self.create("Contact", &Value::Object(m)).await?;
                (
                    201,
                    self.made_id(&answer, "Contact", "Notes", &c.external_id)
                        .await?,
                )
            }
        };
        // The communication is what finds the contact by its number (Creatio fills its
        // SearchNumber on save).
        self.create(
            "ContactCommunication",
            &json!({
                "ContactId": id.to_json(),
                "CommunicationTypeId": COMMUNICATION_MOBILE,
                "Number": c.phone,
            }),
        )
        .await?;
        Ok(made(status, id, None))
    }

    /// A new case for the call's client.
    async fn create_case(&self, o: &NewOrder, in_doubt: bool) -> Result<Delivered, CrmError> {
        if in_doubt {
            if let Some(id) = self.find_marked("Case", "Symptoms", &o.external_id).await? {
                return Ok(made(
                    200,
                    id,
                    Some(format!("case {} already existed", o.external_id)),
                ));
            }
        }
        let contact = self.contact_of(&o.customer).await?;
        let mut m = Map::new();
        m.insert(
            "Subject".into(),
            json!(title(&format!("Call from {}", o.phone))),
        );
        m.insert(
            "Symptoms".into(),
            json!(with_marker(o.comment.as_deref(), &o.external_id)),
        );
        m.insert("RegisteredOn".into(), json!(iso(Utc::now())));
        m.insert("ContactId".into(), contact.to_json());
        if let Some(account) = self.account_for(Some(contact), Some(&o.phone)).await? {
            m.insert("AccountId".into(), account.to_json());
        }
        if let Some(owner) = o.manager_id {
            m.insert("OwnerId".into(), owner.to_json());
        }
        if let Some(origin) = self.named("CaseOrigin", &self.settings.case_origin).await? {
            m.insert("OriginId".into(), origin.to_json());
        }
        if let Some(category) = self
            .named("CaseCategory", &self.settings.case_category)
            .await?
        {
            m.insert("CategoryId".into(), category.to_json());
        }
        let status = o
            .status
            .as_deref()
            .filter(|s| crate::ids::is_guid(s))
            .unwrap_or(CASE_STATUS_NEW);
        m.insert("StatusId".into(), json!(status));
        if let Some(priority) = self.default_case_priority().await? {
            m.insert("PriorityId".into(), priority.to_json());
        }
        let answer = self.create("Case", &Value::Object(m)).await?;
        let id = self
            .made_id(&answer, "Case", "Symptoms", &o.external_id)
            .await?;
        Ok(made(201, id, None))
    }

    /// A contact's or a case's owner: setting a value, so repeating it changes nothing.
    async fn set_owner(&self, m: &ManagerChange) -> Result<Delivered, CrmError> {
        let (entity, id) = match m.entity {
            Entity::Customer => ("Contact", self.contact_of(&m.target).await?),
            Entity::Order => ("Case", self.case_of(&m.target).await?),
        };
        self.update(
            entity,
            id.as_str(),
            &json!({ "OwnerId": m.manager_id.to_json() }),
        )
        .await?;
        Ok(Delivered {
            status: 204,
            note: None,
            result: None,
        })
    }

    /// The contact a reference names.
    pub(super) async fn contact_of(&self, r: &EntityRef) -> Result<CrmId, CrmError> {
        match r {
            EntityRef::Id(id) => Ok(*id),
            EntityRef::Step(name) | EntityRef::ExternalId(name) => {
                // callbridge's contacts are named by their number (`cb-tel-<digits>`).
                if let Some(digits) = name.strip_prefix("cb-tel-") {
                    if let Some(id) = self.contact_with_number(&format!("+{digits}")).await? {
                        return Ok(id);
                    }
                }
                self.find_marked("Contact", "Notes", name)
                    .await?
                    .ok_or_else(|| not_yet("contact", name))
            }
        }
    }

    /// The case a reference names.
    pub(super) async fn case_of(&self, r: &EntityRef) -> Result<CrmId, CrmError> {
        match r {
            EntityRef::Id(id) => Ok(*id),
            EntityRef::Step(name) | EntityRef::ExternalId(name) => self
                .find_marked("Case", "Symptoms", name)
                .await?
                .ok_or_else(|| not_yet("case", name)),
        }
    }

    /// A contact whose communications hold `phone` (the first one Creatio lists).
    async fn contact_with_number(&self, phone: &str) -> Result<Option<CrmId>, CrmError> {
        let Ok(number) = self.normalizer.normalize(phone) else {
            return Ok(None);
        };
        Ok(self
            .owners_of_number(
                &number,
                &self.normalizer,
                "ContactCommunication",
                "ContactId",
            )
            .await?
            .first()
            .copied())
    }

    /// The record of `entity` whose `column` holds the marker of `external_id`.
    pub(super) async fn find_marked(
        &self,
        entity: &str,
        column: &str,
        external_id: &str,
    ) -> Result<Option<CrmId>, CrmError> {
        let marker = marker(external_id);
        let found = self
            .list(
                entity,
                &[
                    (
                        "$filter",
                        format!("contains({column},{})", literal(&marker)),
                    ),
                    ("$select", format!("Id,{column}")),
                    ("$top", "10".into()),
                ],
            )
            .await?;
        // The filter is Creatio's; the marker is checked here too, in case a database
        // compares loosely.
        Ok(found
            .iter()
            .filter(|r| {
                r.get(column)
                    .and_then(Value::as_str)
                    .is_some_and(|t| t.contains(&marker))
            })
            .find_map(|r| guid(r, "Id")))
    }

    /// The id of the record a create answered; when the answer does not carry it, the
    /// record is found by its marker.
    pub(super) async fn made_id(
        &self,
        answer: &Value,
        entity: &str,
        column: &str,
        external_id: &str,
    ) -> Result<CrmId, CrmError> {
        if let Some(id) = guid(answer, "Id") {
            return Ok(id);
        }
        debug!(
            entity,
            "the create's answer has no Id; finding the record by its marker"
        );
        self.find_marked(entity, column, external_id)
            .await?
            .ok_or_else(|| CrmError::BadBody {
                status: 201,
                snippet: format!("{entity} created without an Id in the answer"),
            })
    }

    /// `CasePriorityDef`, the installation's default case priority (the value Creatio
    /// itself gives a case made without one), read once; `None` leaves the column to
    /// Creatio.
    async fn default_case_priority(&self) -> Result<Option<CrmId>, CrmError> {
        let key = ("SysSettingsValue", "CasePriorityDef".to_string());
        if let Some(known) = self.cached(&key) {
            return Ok(known);
        }
        let found = self
            .odata(
                Method::GET,
                &super::odata::with_query(
                    "SysSettingsValue",
                    &[
                        ("$filter", "SysSettings/Code eq 'CasePriorityDef'".into()),
                        ("$select", "GuidValue".into()),
                        ("$top", "1".into()),
                    ],
                ),
                None,
            )
            .await;
        let id = match found {
            Ok(answer) => answer
                .get("value")
                .and_then(Value::as_array)
                .and_then(|v| v.first())
                .and_then(|r| guid(r, "GuidValue")),
            Err(e) if e.is_transient() => return Err(e),
            // Not readable with this user's rights (or not there): Creatio's default.
            Err(e) => {
                debug!(error = %e, "CasePriorityDef not readable; the case takes Creatio's default priority");
                None
            }
        };
        self.remember(key, id);
        Ok(id)
    }
}

/// Campaign data, for a contact's notes (Creatio's contact has no UTM columns).
fn source_text(s: &Source) -> String {
    let parts: Vec<String> = [
        ("source", &s.source),
        ("medium", &s.medium),
        ("campaign", &s.campaign),
        ("keyword", &s.keyword),
        ("content", &s.content),
    ]
    .iter()
    .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={v}")))
    .collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!(" Campaign: {}.", parts.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_end_the_text_and_titles_are_cut() {
        assert_eq!(
            marker("cb-office-1.2-order"),
            "[callbridge cb-office-1.2-order]"
        );
        assert_eq!(
            with_marker(Some("Made by callbridge"), "x"),
            "Made by callbridge\n\n[callbridge x]"
        );
        assert_eq!(with_marker(None, "x"), "[callbridge x]");
        assert_eq!(title(&"я".repeat(300)).chars().count(), TITLE_CHARS);
        let s = Source {
            source: Some("google".into()),
            campaign: Some("winter".into()),
            ..Source::default()
        };
        assert_eq!(
            source_text(&s),
            " Campaign: source=google, campaign=winter."
        );
        assert_eq!(source_text(&Source::default()), "");
        let at = chrono::DateTime::from_timestamp(1_795_627_488, 0).unwrap_or_default();
        assert_eq!(iso(at), "2026-11-25T17:24:48Z");
    }
}
