//! Carrying out one `CrmAction` in retailCRM, exactly once as the CRM sees it: a create
//! in doubt looks its record up by externalId first (tasks by the marker in their
//! commentary); manager changes set a value.

use serde_json::{json, Value};

use super::answers::unknown_codes_note;
use super::{path_segment, RetailCrm};
use crate::actions::{CrmAction, Entity, EntityRef, ManagerChange, NewTask};
use crate::crm::{CrmError, Delivered};

impl RetailCrm {
    /// Sends one action; `Ok` only when the CRM confirmed it. `in_doubt`: an earlier
    /// attempt may have reached the CRM, so look for its record before creating one.
    pub(super) async fn send(
        &self,
        action: &CrmAction,
        in_doubt: bool,
    ) -> Result<Delivered, CrmError> {
        match action {
            CrmAction::CallEvent(event) => {
                let body = self.call_event_json(event);
                let (status, answer) = self
                    .post_form(
                        "/api/v5/telephony/call/event",
                        &[("event", body.to_string())],
                    )
                    .await?;
                Ok(Delivered {
                    status,
                    note: unknown_codes_note(&answer),
                    result: None,
                })
            }
            CrmAction::CreateCustomer(c) => {
                self.create_once(
                    Entity::Customer,
                    &c.external_id,
                    self.customer_json(c),
                    in_doubt,
                )
                .await
            }
            CrmAction::CreateOrder(o) => {
                self.create_once(Entity::Order, &o.external_id, self.order_json(o), in_doubt)
                    .await
            }
            CrmAction::CreateTask(t) => self.create_task(t, in_doubt).await,
            CrmAction::SetManager(m) => self.set_manager(m).await,
            // The outbox runs decisions itself (`decider`); one never reaches the CRM.
            CrmAction::Decide(_) => Err(CrmError::Rejected {
                status: 0,
                message: "a matrix decision is not a CRM request".into(),
                retry_after: None,
            }),
            CrmAction::CallHistory(record) => {
                let calls = Value::Array(vec![self.call_record_json(record)]);
                let (status, answer) = self
                    .post_form(
                        "/api/v5/telephony/calls/upload",
                        &[("calls", calls.to_string())],
                    )
                    .await?;
                // A re-upload after an uncertain attempt lands in duplicateCalls: the
                // call is in the history either way.
                let dup = answer
                    .get("duplicateCalls")
                    .and_then(Value::as_array)
                    .filter(|d| !d.is_empty())
                    .map(|d| format!("already in history: {}", Value::Array(d.clone())));
                Ok(Delivered {
                    status,
                    note: dup,
                    result: None,
                })
            }
        }
    }

    /// Creates a customer or an order at most once: found by its externalId when an
    /// earlier attempt may have made it, or when the create says it exists.
    pub(super) async fn create_once(
        &self,
        entity: Entity,
        external_id: &str,
        body: Value,
        in_doubt: bool,
    ) -> Result<Delivered, CrmError> {
        let (plural, field) = match entity {
            Entity::Customer => ("customers", "customer"),
            Entity::Order => ("orders", "order"),
        };
        if in_doubt {
            if let Some(found) = self.find_by_external_id(plural, field, external_id).await? {
                return Ok(found);
            }
        }
        let mut fields = vec![(field, body.to_string())];
        if let Some(site) = &self.site {
            fields.push(("site", site.clone()));
        }
        match self
            .post_form(&format!("/api/v5/{plural}/create"), &fields)
            .await
        {
            Ok((status, answer)) => Ok(Delivered {
                status,
                note: None,
                result: answer.get("id").map(|id| json!({ "id": id })),
            }),
            Err(e) if e.status() == Some(400) && mentions_existing_external_id(&e) => {
                match self.find_by_external_id(plural, field, external_id).await? {
                    Some(found) => Ok(found),
                    None => Err(e),
                }
            }
            Err(e) => Err(e),
        }
    }

    /// `GET /{customers|orders}/{externalId}?by=externalId`: the record's id, or `None`
    /// when the CRM has no such record.
    pub(super) async fn find_by_external_id(
        &self,
        plural: &str,
        field: &str,
        external_id: &str,
    ) -> Result<Option<Delivered>, CrmError> {
        let path = format!("/api/v5/{plural}/{}", path_segment(external_id));
        let mut query = vec![("by", "externalId".to_string())];
        if let Some(site) = &self.site {
            query.push(("site", site.clone()));
        }
        match self.get(&path, &query).await {
            Ok((status, answer)) => {
                let id = answer.get(field).and_then(|c| c.get("id")).cloned();
                Ok(id.map(|id| Delivered {
                    status,
                    note: Some(format!("{field} {external_id} already existed (id {id})")),
                    result: Some(json!({ "id": id })),
                }))
            }
            Err(e) if e.status() == Some(404) => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub(super) async fn create_task(
        &self,
        t: &NewTask,
        in_doubt: bool,
    ) -> Result<Delivered, CrmError> {
        if in_doubt {
            if let Some(found) = self.find_task(t).await? {
                return Ok(found);
            }
        }
        let mut fields = vec![("task", self.task_json(t).to_string())];
        if let Some(site) = &self.site {
            fields.push(("site", site.clone()));
        }
        let (status, answer) = self.post_form("/api/v5/tasks/create", &fields).await?;
        Ok(Delivered {
            status,
            note: None,
            result: answer.get("id").map(|id| json!({ "id": id })),
        })
    }

    /// A task made by an earlier attempt: the performer's tasks whose text search finds
    /// the marker, checked here (the marker must really be in the text or commentary).
    pub(super) async fn find_task(&self, t: &NewTask) -> Result<Option<Delivered>, CrmError> {
        let query = vec![
            ("filter[text]", t.marker.clone()),
            ("filter[performers][]", t.performer_id.to_string()),
            ("limit", "100".to_string()),
        ];
        let (status, answer) = self.get("/api/v5/tasks", &query).await?;
        let found = answer
            .get("tasks")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .find(|task| {
                ["commentary", "text"].iter().any(|k| {
                    task.get(*k)
                        .and_then(Value::as_str)
                        .is_some_and(|s| s.contains(&t.marker))
                })
            });
        Ok(found.map(|task| Delivered {
            status,
            note: Some(format!("task {} already existed", t.marker)),
            result: task.get("id").map(|id| json!({ "id": id })),
        }))
    }

    pub(super) async fn set_manager(&self, m: &ManagerChange) -> Result<Delivered, CrmError> {
        let (plural, field) = match m.entity {
            Entity::Customer => ("customers", "customer"),
            Entity::Order => ("orders", "order"),
        };
        let (key, by) = match &m.target {
            EntityRef::Id(id) => (id.to_string(), "id"),
            EntityRef::ExternalId(x) | EntityRef::Step(x) => (x.clone(), "externalId"),
        };
        let mut fields = vec![
            (field, json!({ "managerId": m.manager_id }).to_string()),
            ("by", by.to_string()),
        ];
        if let Some(site) = &self.site {
            fields.push(("site", site.clone()));
        }
        let path = format!("/api/v5/{plural}/{}/edit", path_segment(&key));
        let (status, _) = self.post_form(&path, &fields).await?;
        Ok(Delivered {
            status,
            note: None,
            result: None,
        })
    }
}

/// A create refused because a record with this externalId exists: the earlier attempt's.
pub(super) fn mentions_existing_external_id(e: &CrmError) -> bool {
    match e {
        CrmError::Rejected { message, .. } => {
            let m = message.to_ascii_lowercase();
            m.contains("externalid") && (m.contains("already exists") || m.contains("exists"))
        }
        _ => false,
    }
}
