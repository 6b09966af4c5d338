//! What the CRM must be told about a call: the `CrmAction` vocabulary (every kind the
//! matrix of docs/matrix.md needs: pop-ups, history, customers, orders, tasks, manager
//! changes), and the thin first cut of the rules deciding them from the tracker's
//! `CallUpdate`s (the ringing pop-up and, after hang-up, the call in the history). Pure:
//! no I/O, no clock.
//!
//! `CrmAction`s are stored in the outbox as JSON before anything is sent, so their serde
//! form is a storage format: add fields with defaults, never rename.
//!
//! Actions of one call are delivered in order and may depend on each other: a create
//! names its `step` (its externalId), and a later action refers to the created record by
//! [`EntityRef::Step`]; the outbox resolves that to the id the CRM answered, at delivery.

use serde::{Deserialize, Serialize};

use crate::call::{CallHeader, CallStage, CallSummary, CallUpdate, Campaign, Direction};
use crate::ids::CrmId;
use crate::time::Timestamp;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum CrmAction {
    /// A pop-up (or its closing) in the CRM: retailCRM `POST /telephony/call/event`.
    CallEvent(CallEvent),
    /// The call in the customer's communication history: `POST /telephony/calls/upload`.
    CallHistory(CallRecord),
    /// A new customer: `POST /customers/create`, idempotent by its `externalId`.
    CreateCustomer(NewCustomer),
    /// A new order: `POST /orders/create`, idempotent by its `externalId`.
    CreateOrder(NewOrder),
    /// A task: `POST /tasks/create`; tasks have no externalId, so a marker in the
    /// commentary finds one already made.
    CreateTask(NewTask),
    /// A customer or order gets another responsible manager: `POST /{customers|orders}/{x}/edit`
    /// (setting a value, so repeating it changes nothing).
    SetManager(ManagerChange),
    /// Not a request: a moment of a call for the matrix to decide. Delivering it reads
    /// the caller's customers from the CRM, runs `matrix::decide*` and stores the
    /// actions decided, in the transaction that marks it done.
    Decide(DecideRequest),
}

/// A moment of a call the matrix decides about, with what the tracker knew then.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecideRequest {
    pub header: CallHeader,
    pub moment: Moment,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "moment", rename_all = "snake_case")]
pub enum Moment {
    /// Employee extensions started ringing.
    Ringing {
        new: Vec<String>,
    },
    Answered {
        extension: String,
    },
    Ended {
        summary: Box<CallSummary>,
    },
}

impl CrmAction {
    /// A short name for logs, metrics and the outbox table.
    pub fn kind(&self) -> &'static str {
        match self {
            CrmAction::CallEvent(e) => match e.event {
                CallEventType::In => "popup_in",
                CallEventType::Out => "popup_out",
                CallEventType::Hangup => "popup_hangup",
            },
            CrmAction::CallHistory(_) => "call_history",
            CrmAction::CreateCustomer(_) => "customer",
            CrmAction::CreateOrder(_) => "order",
            CrmAction::CreateTask(_) => "task",
            CrmAction::SetManager(m) => match m.entity {
                Entity::Customer => "customer_manager",
                Entity::Order => "order_manager",
            },
            CrmAction::Decide(_) => "decide",
        }
    }

    /// Whether it goes ahead of everything else: pop-ups (and the ringing decisions that
    /// make them) are useless once the manager has picked up.
    pub fn is_urgent(&self) -> bool {
        match self {
            CrmAction::CallEvent(_) => true,
            CrmAction::Decide(d) => matches!(d.moment, Moment::Ringing { .. }),
            _ => false,
        }
    }

    /// The name later actions of the same call use to refer to what this one creates.
    pub fn step(&self) -> Option<String> {
        match self {
            CrmAction::CreateCustomer(c) => Some(c.external_id.clone()),
            CrmAction::CreateOrder(o) => Some(o.external_id.clone()),
            _ => None,
        }
    }

    /// Links to the call's client and open order that only say what the action is about
    /// (a CRM that links calls and tasks to them uses them; retailCRM does not): resolved
    /// before sending like `refs_mut`, but one whose record could not be made is dropped
    /// instead of holding the action back.
    pub fn links_mut(&mut self) -> Vec<&mut Option<EntityRef>> {
        match self {
            CrmAction::CreateTask(t) => vec![&mut t.open_order],
            CrmAction::CallHistory(r) => vec![&mut r.customer, &mut r.order],
            _ => Vec::new(),
        }
    }

    /// Every reference to another record this action carries, to resolve before sending.
    pub fn refs_mut(&mut self) -> Vec<&mut EntityRef> {
        match self {
            CrmAction::CreateOrder(o) => vec![&mut o.customer],
            CrmAction::CreateTask(t) => t.customer.iter_mut().chain(t.order.iter_mut()).collect(),
            CrmAction::SetManager(m) => vec![&mut m.target],
            _ => Vec::new(),
        }
    }
}

/// How an action names a customer or an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntityRef {
    /// The CRM's own id (a record found by a lookup).
    Id(CrmId),
    /// Our externalId of a record created earlier (possibly by another call).
    ExternalId(String),
    /// The record an earlier action of the same call creates (its `step`), replaced by the
    /// id the CRM answered before this action is sent.
    Step(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Entity {
    Customer,
    Order,
}

/// Where a customer or order came from (retailCRM `source`): campaign data the PBX passed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Source {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub medium: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub campaign: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keyword: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewCustomer {
    /// Derived from the call (`cb-{pbx}-{linkedid}`), so a second attempt finds the first.
    pub external_id: String,
    pub phone: String,
    #[serde(default)]
    pub first_name: Option<String>,
    #[serde(default)]
    pub manager_id: Option<CrmId>,
    #[serde(default)]
    pub source: Option<Source>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewOrder {
    pub external_id: String,
    pub customer: EntityRef,
    pub phone: String,
    #[serde(default)]
    pub manager_id: Option<CrmId>,
    /// Order method code (`GET /reference/order-methods`), e.g. `phone`.
    #[serde(default)]
    pub order_method: Option<String>,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub source: Option<Source>,
    #[serde(default)]
    pub comment: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewTask {
    /// Unique per task (`{call externalId}#{n}`); written into the commentary so a lookup
    /// after an uncertain attempt finds the task if it was made.
    pub marker: String,
    pub text: String,
    #[serde(default)]
    pub commentary: Option<String>,
    pub performer_id: CrmId,
    #[serde(default)]
    pub customer: Option<EntityRef>,
    #[serde(default)]
    pub order: Option<EntityRef>,
    #[serde(default)]
    pub phone: Option<String>,
    /// A completed task: a record of what was done (the call, with its recording).
    #[serde(default)]
    pub complete: bool,
    /// The client's open order the call is about, when the task is on the client (Creatio
    /// links the activity to that case: "consult on an existing case").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub open_order: Option<EntityRef>,
    /// The task is about a missed call (Creatio also queues its case for the operators).
    #[serde(default, skip_serializing_if = "is_false")]
    pub missed_call: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManagerChange {
    pub entity: Entity,
    pub target: EntityRef,
    pub manager_id: CrmId,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CallEventType {
    In,
    Out,
    Hangup,
}

/// How a call ended, in the words of retailCRM's `hangupStatus`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HangupStatus {
    Answered,
    Busy,
    Cancel,
    Failed,
    NoAnswered,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallEvent {
    pub event: CallEventType,
    /// The customer's number.
    pub phone: String,
    /// Extension codes the pop-up goes to.
    pub codes: Vec<String>,
    /// CRM users the pop-up goes to besides the codes' owners (senior managers when an
    /// unknown extension answered; all managers for a missed call).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub user_ids: Vec<CrmId>,
    #[serde(default)]
    pub hangup_status: Option<HangupStatus>,
    /// Links the events of one call in the CRM.
    pub call_external_id: String,
    /// Our number the customer called.
    #[serde(default)]
    pub external_phone: Option<String>,
}

/// The result of a call as retailCRM's history knows it (`calls[].result`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CallResult {
    Answered,
    Busy,
    Failed,
    NoAnswer,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallRecord {
    pub date: Timestamp,
    pub direction: Direction,
    pub phone: String,
    /// The employee's extension code.
    #[serde(default)]
    pub code: Option<String>,
    pub result: CallResult,
    /// Talk time, seconds.
    pub duration: u32,
    /// Time before the answer (or before the end), seconds.
    pub duration_waiting: u32,
    pub external_id: String,
    #[serde(default)]
    pub external_phone: Option<String>,
    #[serde(default)]
    pub record_url: Option<String>,
    /// The client the call was with, and the order (Creatio: the case) it is about: for a
    /// CRM whose call records link to them (retailCRM's find the client by the number).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer: Option<EntityRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order: Option<EntityRef>,
}

/// Why an update gave no action; logged at debug so an administrator can see why a call
/// left no trace in the CRM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoAction {
    Internal,
    NoCustomerNumber,
    Nothing,
}

/// The action for one step of one call: the moment for the matrix to decide (at
/// delivery, when the CRM can be asked who the caller is). Ringing and answer matter
/// for inbound calls only; every call's end is decided.
pub fn actions_for(update: &CallUpdate) -> Result<Vec<CrmAction>, NoAction> {
    let header = &update.header;
    if header.direction == Direction::Internal {
        return Err(NoAction::Internal);
    }
    if header.customer_number.is_none() {
        return Err(NoAction::NoCustomerNumber);
    }
    let inbound = header.direction == Direction::Inbound;
    let moment = match &update.stage {
        CallStage::Ringing { new, .. } if inbound => Moment::Ringing { new: new.clone() },
        CallStage::Answered { extension } if inbound => Moment::Answered {
            extension: extension.clone(),
        },
        CallStage::Ended(summary) => Moment::Ended {
            summary: summary.clone(),
        },
        _ => return Err(NoAction::Nothing),
    };
    Ok(vec![CrmAction::Decide(DecideRequest {
        header: header.clone(),
        moment,
    })])
}

impl Source {
    /// retailCRM's `source` for a call's campaign data (UTM term is its `keyword`).
    pub fn of_campaign(c: &Campaign) -> Option<Source> {
        (!c.is_empty()).then(|| Source {
            source: c.source.clone(),
            medium: c.medium.clone(),
            campaign: c.campaign.clone(),
            keyword: c.term.clone(),
            content: c.content.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::call::Outcome;

    fn header(direction: Direction, number: Option<&str>) -> CallHeader {
        CallHeader {
            pbx: "office".into(),
            call_id: "1795627488.2".into(),
            direction,
            customer_number: number.map(str::to_string),
            did: Some("74951234567".into()),
            started_at: Timestamp(1_000_000),
            campaign: Default::default(),
        }
    }

    fn summary(outcome: Outcome, employee: Option<&str>) -> CallSummary {
        CallSummary {
            header: header(Direction::Inbound, Some("+79161234567")),
            outcome,
            rang: vec!["101".into()],
            employee: employee.map(str::to_string),
            answered_at: None,
            ended_at: Timestamp(10_000_000),
            duration_secs: 9,
            talk_secs: 6,
            wait_secs: 3,
            talkers: Vec::new(),
            recording: None,
            voicemail: None,
            queue: None,
            channels: Vec::new(),
            reconstructed: false,
        }
    }

    fn decided(up: &CallUpdate) -> Result<Moment, NoAction> {
        let mut actions = actions_for(up)?;
        assert_eq!(actions.len(), 1);
        match actions.remove(0) {
            CrmAction::Decide(d) => {
                assert_eq!(d.header, up.header);
                Ok(d.moment)
            }
            other => panic!("not a decision: {other:?}"),
        }
    }

    #[test]
    fn inbound_ringing_answer_and_end_are_decided() {
        let ringing = CallUpdate {
            header: header(Direction::Inbound, Some("+79161234567")),
            at: Timestamp(2),
            stage: CallStage::Ringing {
                extensions: vec!["101".into(), "102".into()],
                new: vec!["102".into()],
            },
        };
        assert_eq!(
            decided(&ringing),
            Ok(Moment::Ringing {
                new: vec!["102".into()]
            })
        );
        let answered = CallUpdate {
            stage: CallStage::Answered {
                extension: "102".into(),
            },
            ..ringing.clone()
        };
        assert_eq!(
            decided(&answered),
            Ok(Moment::Answered {
                extension: "102".into()
            })
        );
        let s = summary(Outcome::Answered, Some("102"));
        let ended = CallUpdate {
            header: s.header.clone(),
            at: Timestamp(10),
            stage: CallStage::Ended(Box::new(s.clone())),
        };
        assert_eq!(
            decided(&ended),
            Ok(Moment::Ended {
                summary: Box::new(s)
            })
        );
    }

    #[test]
    fn outbound_calls_are_decided_at_their_end_only() {
        let up = CallUpdate {
            header: header(Direction::Outbound, Some("89031112233")),
            at: Timestamp(2),
            stage: CallStage::Answered {
                extension: "101".into(),
            },
        };
        assert_eq!(decided(&up), Err(NoAction::Nothing));
    }

    #[test]
    fn internal_and_anonymous_calls_leave_no_actions() {
        let mut s = summary(Outcome::Answered, Some("101"));
        s.header.direction = Direction::Internal;
        let up = CallUpdate {
            header: s.header.clone(),
            at: Timestamp(10),
            stage: CallStage::Ended(Box::new(s)),
        };
        assert_eq!(actions_for(&up), Err(NoAction::Internal));
        let mut s = summary(Outcome::Missed, None);
        s.header.customer_number = None;
        let up = CallUpdate {
            header: s.header.clone(),
            at: Timestamp(10),
            stage: CallStage::Ended(Box::new(s)),
        };
        assert_eq!(actions_for(&up), Err(NoAction::NoCustomerNumber));
    }

    #[test]
    fn stored_form_round_trips() {
        let s = summary(Outcome::Answered, Some("101"));
        let up = CallUpdate {
            header: s.header.clone(),
            at: Timestamp(10),
            stage: CallStage::Ended(Box::new(s)),
        };
        for a in actions_for(&up).expect("actions") {
            let json = serde_json::to_string(&a).expect("json");
            let back: CrmAction = serde_json::from_str(&json).expect("back");
            assert_eq!(back, a);
        }
    }
}
