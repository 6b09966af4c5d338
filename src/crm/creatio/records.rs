//! The records of what happened: a task as an `Activity` (with, for a missed call, a
//! `QueueItem` in the operators' queue), and the call itself as a `Call`. Each is found
//! again when in doubt: the activity by the marker in its `Notes`, the queue item by its
//! queue and record, the call by its `IntegrationId`.

use chrono::{Duration as Span, Utc};
use reqwest::Method;
use serde_json::{json, Map, Value};

use super::lookups::{
    ACTIVITY_CATEGORY_TODO, ACTIVITY_PRIORITY_DEFAULT, ACTIVITY_STATUS_COMPLETED,
    ACTIVITY_STATUS_NOT_STARTED, ACTIVITY_TYPE_TASK, CALL_INCOMING, CALL_OUTGOING, QUEUE_ITEM_NEW,
};
use super::odata::{guid, literal};
use super::writes::{iso, made, title, with_marker};
use super::CreatioCrm;
use crate::actions::{CallRecord, CallResult, NewTask};
use crate::call::Direction;
use crate::crm::{CrmError, Delivered};
use crate::ids::CrmId;

/// How long an open task gives its performer (Creatio requires a due date).
const TASK_DUE_HOURS: i64 = 1;

impl CreatioCrm {
    /// An activity of type Task for `t.performer_id`, on the client (and the case the call
    /// is about) or on the case; a missed call's also queues the case for the operators.
    pub(super) async fn create_activity(
        &self,
        t: &NewTask,
        in_doubt: bool,
    ) -> Result<Delivered, CrmError> {
        let case = match t.order.as_ref().or(t.open_order.as_ref()) {
            Some(r) => Some(self.case_of(r).await?),
            None => None,
        };
        let contact = match &t.customer {
            Some(r) => Some(self.contact_of(r).await?),
            // A task on a case is also on the case's contact.
            None => match case {
                Some(case) => self.contact_of_case(case).await?,
                None => None,
            },
        };
        let queue = if t.missed_call {
            self.missed_calls_queue().await?
        } else {
            None
        };
        let earlier = if in_doubt {
            self.find_marked("Activity", "Notes", &t.marker).await?
        } else {
            None
        };
        let activity = activity_json(t, contact, case);
        if let (None, Some(queue), Some(case), false) = (earlier, queue, case, in_doubt) {
            // Nothing to find first: the activity and the case's queue item in one round trip.
            if let Some(id) = self
                .activity_and_queue_item(&activity, queue, case, t)
                .await?
            {
                return Ok(made(201, id, Some("queued for the operators".into())));
            }
        }
        let (status, id, note) = match earlier {
            Some(id) => (200, id, Some(format!("task {} already existed", t.marker))),
            None => {
                let answer = self.create("Activity", &activity).await?;
                let id = self
                    .made_id(&answer, "Activity", "Notes", &t.marker)
                    .await?;
                (201, id, None)
            }
        };
        if let Some(queue) = queue {
            // The queue is of cases; a missed call without one queues its task.
            let record = case.unwrap_or(id);
            self.queue_once(queue, record, t).await?;
            return Ok(made(status, id, Some("queued for the operators".into())));
        }
        Ok(made(status, id, note))
    }

    /// The activity and its queue item in one `$batch`; `None` when this installation
    /// refuses `$batch` (it is then not tried again, and nothing was made).
    async fn activity_and_queue_item(
        &self,
        activity: &Value,
        queue: CrmId,
        case: CrmId,
        t: &NewTask,
    ) -> Result<Option<CrmId>, CrmError> {
        if self
            .batch_refused
            .load(std::sync::atomic::Ordering::Relaxed)
        {
            return Ok(None);
        }
        let answers = self
            .batch(&[
                (Method::POST, "Activity".into(), activity.clone()),
                (
                    Method::POST,
                    "QueueItem".into(),
                    queue_item_json(queue, case, t),
                ),
            ])
            .await;
        let mut answers = match answers {
            Ok(a) => a.into_iter(),
            Err(e) if !e.is_transient() => {
                tracing::warn!(error = %e, "Creatio refused $batch; sending its requests one by one from now on");
                self.batch_refused
                    .store(true, std::sync::atomic::Ordering::Relaxed);
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        let made_activity = answers.next().unwrap_or(Err(CrmError::BadBody {
            status: 200,
            snippet: "an empty $batch answer".into(),
        }))?;
        let id = self
            .made_id(&made_activity, "Activity", "Notes", &t.marker)
            .await?;
        answers.next().unwrap_or(Err(CrmError::BadBody {
            status: 200,
            snippet: "a $batch answer without the queue item".into(),
        }))?;
        Ok(Some(id))
    }

    /// Puts `record` in `queue` unless it is already waiting there.
    async fn queue_once(&self, queue: CrmId, record: CrmId, t: &NewTask) -> Result<(), CrmError> {
        let waiting = self
            .list(
                "QueueItem",
                &[
                    (
                        "$filter",
                        format!(
                            "Queue/Id eq {queue} and EntityRecordId eq {record} and Status/Id eq {QUEUE_ITEM_NEW}"
                        ),
                    ),
                    ("$select", "Id".into()),
                    ("$top", "1".into()),
                ],
            )
            .await?;
        if waiting.is_empty() {
            self.create("QueueItem", &queue_item_json(queue, record, t))
                .await?;
        }
        Ok(())
    }

    /// `[creatio] missed_calls_queue`, looked up once; `None` when unset or not there.
    async fn missed_calls_queue(&self) -> Result<Option<CrmId>, CrmError> {
        let Some(name) = &self.settings.missed_calls_queue else {
            return Ok(None);
        };
        match self.named("Queue", name).await {
            // An installation without queues (BPMSoft may have no `Queue` object) still
            // gets the task: losing it for the queue item would be worse.
            Err(e) if !e.is_transient() => {
                tracing::warn!(error = %e, queue = %name, "Creatio refused the queue lookup; missed calls are not queued");
                self.remember(("Queue", name.clone()), None);
                Ok(None)
            }
            found => found,
        }
    }

    /// The contact of a case.
    async fn contact_of_case(&self, case: CrmId) -> Result<Option<CrmId>, CrmError> {
        let found = self
            .list(
                "Case",
                &[
                    ("$filter", format!("Id eq {case}")),
                    ("$select", "Id,ContactId".into()),
                ],
            )
            .await?;
        Ok(found.first().and_then(|c| guid(c, "ContactId")))
    }

    /// The call in the client's history: a `Call` record, linked to the contact, its
    /// account and the case, with the recording's signed link in `Comment`.
    pub(super) async fn record_call(
        &self,
        r: &CallRecord,
        in_doubt: bool,
    ) -> Result<Delivered, CrmError> {
        if in_doubt {
            let found = self
                .list(
                    "Call",
                    &[
                        (
                            "$filter",
                            format!("IntegrationId eq {}", literal(&r.external_id)),
                        ),
                        ("$select", "Id".into()),
                        ("$top", "1".into()),
                    ],
                )
                .await?;
            if let Some(id) = found.first().and_then(|c| guid(c, "Id")) {
                return Ok(made(200, id, Some("already in history".into())));
            }
        }
        // Links only say what the call was about: a record that cannot be found is left
        // out rather than holding the call back.
        let contact = match &r.customer {
            Some(c) => self.contact_of(c).await.ok(),
            None => None,
        };
        let case = match &r.order {
            Some(o) => self.case_of(o).await.ok(),
            None => None,
        };
        let account = self.account_for(contact, Some(&r.phone)).await?;
        let answer = self
            .create("Call", &call_json(r, contact, account, case))
            .await?;
        match guid(&answer, "Id") {
            Some(id) => Ok(made(201, id, None)),
            None => Ok(Delivered {
                status: 201,
                note: None,
                result: None,
            }),
        }
    }
}

/// The `Activity` body of a task.
fn activity_json(t: &NewTask, contact: Option<CrmId>, case: Option<CrmId>) -> Value {
    let now = Utc::now();
    let due = if t.complete {
        now
    } else {
        now + Span::hours(TASK_DUE_HOURS)
    };
    let mut m = Map::new();
    m.insert("Title".into(), json!(title(&t.text)));
    let notes = match &t.commentary {
        Some(c) if !c.is_empty() => format!("{}\n\n{c}", t.text),
        _ => t.text.clone(),
    };
    m.insert("Notes".into(), json!(with_marker(Some(&notes), &t.marker)));
    m.insert("StartDate".into(), json!(iso(now)));
    m.insert("DueDate".into(), json!(iso(due)));
    m.insert("TypeId".into(), json!(ACTIVITY_TYPE_TASK));
    m.insert("ActivityCategoryId".into(), json!(ACTIVITY_CATEGORY_TODO));
    let status = if t.complete {
        ACTIVITY_STATUS_COMPLETED
    } else {
        ACTIVITY_STATUS_NOT_STARTED
    };
    m.insert("StatusId".into(), json!(status));
    m.insert("PriorityId".into(), json!(ACTIVITY_PRIORITY_DEFAULT));
    m.insert("OwnerId".into(), t.performer_id.to_json());
    if let Some(contact) = contact {
        m.insert("ContactId".into(), contact.to_json());
    }
    if let Some(case) = case {
        m.insert("CaseId".into(), case.to_json());
    }
    Value::Object(m)
}

/// The `QueueItem` body: `record` waiting, New, in `queue`.
fn queue_item_json(queue: CrmId, record: CrmId, t: &NewTask) -> Value {
    let caption = match &t.phone {
        Some(phone) => format!("Missed call from {phone}"),
        None => "Missed call".to_string(),
    };
    json!({
        "QueueId": queue.to_json(),
        "EntityRecordId": record.to_json(),
        "StatusId": QUEUE_ITEM_NEW,
        "Caption": title(&caption),
    })
}

/// The `Call` body of a call record.
fn call_json(
    r: &CallRecord,
    contact: Option<CrmId>,
    account: Option<CrmId>,
    case: Option<CrmId>,
) -> Value {
    let start = r.date.to_chrono();
    let total = r.duration.saturating_add(r.duration_waiting);
    let end = start + Span::seconds(i64::from(total));
    let ours = r.code.clone().or_else(|| r.external_phone.clone());
    let (caller, called, direction, caption) = match r.direction {
        Direction::Outbound => (
            ours,
            Some(r.phone.clone()),
            CALL_OUTGOING,
            format!("Outgoing call to {}", r.phone),
        ),
        _ => (
            Some(r.phone.clone()),
            ours,
            CALL_INCOMING,
            format!("Incoming call from {}", r.phone),
        ),
    };
    let outcome = match r.result {
        CallResult::Answered => match &r.code {
            Some(code) => format!("answered by {code}"),
            None => "answered".to_string(),
        },
        CallResult::Busy => "busy".to_string(),
        CallResult::Failed => "failed".to_string(),
        CallResult::NoAnswer => "not answered".to_string(),
    };
    let mut m = Map::new();
    m.insert("IntegrationId".into(), json!(r.external_id));
    m.insert(
        "Caption".into(),
        json!(title(&format!("{caption}, {outcome}"))),
    );
    if let Some(caller) = caller {
        m.insert("CallerId".into(), json!(caller));
    }
    if let Some(called) = called {
        m.insert("CalledId".into(), json!(called));
    }
    m.insert("StartDate".into(), json!(iso(start)));
    m.insert("EndDate".into(), json!(iso(end)));
    m.insert("Duration".into(), json!(total));
    m.insert("TalkTime".into(), json!(r.duration));
    m.insert("BeforeConnectionTime".into(), json!(r.duration_waiting));
    m.insert("DirectionId".into(), json!(direction));
    if let Some(link) = &r.record_url {
        m.insert("Comment".into(), json!(link));
    }
    for (column, id) in [
        ("ContactId", contact),
        ("AccountId", account),
        ("CaseId", case),
    ] {
        if let Some(id) = id {
            m.insert(column.into(), id.to_json());
        }
    }
    Value::Object(m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::Timestamp;

    fn record(direction: Direction, result: CallResult) -> CallRecord {
        CallRecord {
            date: Timestamp::from_secs(1_795_627_488),
            direction,
            phone: "+79161234567".into(),
            code: Some("101".into()),
            result,
            duration: 42,
            duration_waiting: 8,
            external_id: "cb-office-1795627488.2".into(),
            external_phone: Some("74951234567".into()),
            record_url: Some("https://pbx.example/r/cb-office-1795627488.2?sig=x".into()),
            customer: None,
            order: None,
        }
    }

    #[test]
    fn a_call_record_carries_its_times_direction_and_link() {
        let contact = CrmId::new("a1b2c3d4-0000-4000-8000-000000000001");
        let call = call_json(
            &record(Direction::Inbound, CallResult::Answered),
            contact,
            None,
            None,
        );
        assert_eq!(call["IntegrationId"], "cb-office-1795627488.2");
        assert_eq!(call["CallerId"], "+79161234567");
        assert_eq!(call["CalledId"], "101");
        assert_eq!(call["StartDate"], "2026-11-25T17:24:48Z");
        assert_eq!(call["EndDate"], "2026-11-25T17:25:38Z");
        assert_eq!(call["Duration"], 50);
        assert_eq!(call["TalkTime"], 42);
        assert_eq!(call["BeforeConnectionTime"], 8);
        assert_eq!(call["DirectionId"], CALL_INCOMING);
        assert_eq!(
            call["Caption"],
            "Incoming call from +79161234567, answered by 101"
        );
        assert_eq!(call["ContactId"], "a1b2c3d4-0000-4000-8000-000000000001");
        assert!(call["Comment"].as_str().is_some_and(|c| c.contains("sig=")));
        assert!(call.get("CaseId").is_none());
        let out = call_json(
            &record(Direction::Outbound, CallResult::NoAnswer),
            None,
            None,
            None,
        );
        assert_eq!(out["CallerId"], "101");
        assert_eq!(out["CalledId"], "+79161234567");
        assert_eq!(out["DirectionId"], CALL_OUTGOING);
        assert_eq!(
            out["Caption"],
            "Outgoing call to +79161234567, not answered"
        );
    }

    #[test]
    fn a_task_is_an_activity_due_when_open_and_done_when_complete() {
        let performer =
            CrmId::new("a1b2c3d4-0000-4000-8000-000000000101").unwrap_or(CrmId::number(1));
        let mut t = NewTask {
            marker: "cb-office-1.2#ended1".into(),
            text: "Call the client back".into(),
            commentary: Some("Missed call from +79161234567".into()),
            performer_id: performer,
            customer: None,
            order: None,
            phone: Some("+79161234567".into()),
            complete: false,
            open_order: None,
            missed_call: true,
        };
        let open = activity_json(&t, None, None);
        assert_eq!(open["StatusId"], ACTIVITY_STATUS_NOT_STARTED);
        assert_eq!(open["OwnerId"], "a1b2c3d4-0000-4000-8000-000000000101");
        assert_ne!(open["StartDate"], open["DueDate"]);
        assert!(open["Notes"]
            .as_str()
            .is_some_and(|n| n.ends_with("[callbridge cb-office-1.2#ended1]")));
        t.complete = true;
        assert_eq!(
            activity_json(&t, None, None)["StatusId"],
            ACTIVITY_STATUS_COMPLETED
        );
        let queue = CrmId::number(7);
        let item = queue_item_json(queue, performer, &t);
        assert_eq!(item["StatusId"], QUEUE_ITEM_NEW);
        assert_eq!(item["Caption"], "Missed call from +79161234567");
    }
}
