//! The call matrix (docs/matrix.md): what a call means for the CRM, given who the caller is
//! there and who took the call. Pure: the tracker's view of the call, a snapshot of the
//! CRM (the customers with the caller's number, their orders) and the configuration in;
//! the `CrmAction`s out, which the outbox delivers.
//!
//! A call is decided at three moments: while it rings (pop-ups; with `create_on = "ring"`
//! the new client's customer and order, row 7), when it is answered (the unknown-employee
//! pop-up P2; with `create_on = "answer"` the new client's customer and order, row 1) and
//! after it ended (tasks, manager changes, history). What an earlier moment created is
//! handed to the later ones ([`Earlier`]), so a call creates at most one customer and one
//! order.
//!
//! Records are named so that repeating a decision cannot duplicate them: a customer's
//! externalId comes from the phone number (two calls from one new number make one
//! customer), an order's and a task's from the call.
//!
//! This file holds the three moments' entry points; `inputs` what they decide from,
//! `rules` the rows, `decision` the builder of one moment's records and pop-ups.

use crate::actions::{
    CallEvent, CallEventType, CallRecord, CallResult, CrmAction, Entity, EntityRef, HangupStatus,
    ManagerChange, NewCustomer, NewOrder, NewTask, Source,
};
use crate::call::{CallHeader, CallSummary, Direction, Outcome};
use crate::directory::{Directory, UserId};
use crate::phone::PhoneNumber;
use crate::time::Timestamp;

mod decision;
mod inputs;
mod rules;
#[cfg(test)]
mod tests;

pub use inputs::{
    classify, customer_external_id, order_external_id, ClientKind, CreateOn, CrmSnapshot, Customer,
    Earlier, Handler, MatrixConfig, Order,
};
pub use rules::recording_link;

use decision::{Decision, On};
use inputs::handler;
use rules::{close_popups, history, inbound, outbound, Context};

/// The call is ringing on `new` (employee extensions that just started): the pop-ups
/// (P1), and with `create_on = "ring"` a new client's customer and order, both for the
/// senior manager (row 7).
pub fn decide_ringing(
    header: &CallHeader,
    phone: &PhoneNumber,
    new: &[String],
    source: Option<Source>,
    snapshot: &CrmSnapshot,
    config: &MatrixConfig,
) -> Vec<CrmAction> {
    if header.direction != Direction::Inbound {
        return Vec::new();
    }
    let mut d = Decision::new(header, phone, config, "r");
    d.popup(CallEventType::In, new.to_vec(), Vec::new(), None);
    if config.create_on == CreateOn::Ring
        && !snapshot.earlier.created_anything()
        && classify(snapshot) == ClientKind::New
    {
        let senior = d.senior();
        d.create_customer_and_order(senior, source);
    }
    d.actions
}

/// `extension` answered: the pop-up to the senior managers when it belongs to nobody
/// (P2); with `create_on = "answer"` a new client's customer and order, for the manager
/// who answered (row 1; the senior manager when nobody known answered).
pub fn decide_answered(
    header: &CallHeader,
    phone: &PhoneNumber,
    extension: &str,
    source: Option<Source>,
    snapshot: &CrmSnapshot,
    config: &MatrixConfig,
) -> Vec<CrmAction> {
    if header.direction != Direction::Inbound {
        return Vec::new();
    }
    let mut d = Decision::new(header, phone, config, "a");
    let who = handler(Some(extension), &config.directory);
    if let Handler::Unmapped { .. } = who {
        d.popup(
            CallEventType::In,
            Vec::new(),
            config.directory.senior().to_vec(),
            None,
        );
    }
    if config.create_on == CreateOn::Answer
        && !snapshot.earlier.created_anything()
        && classify(snapshot) == ClientKind::New
    {
        let manager = match who {
            Handler::Employee { user, .. } => Some(user),
            _ => d.senior(),
        };
        d.create_customer_and_order(manager, source);
    }
    d.actions
}

/// The call ended: tasks, manager changes and orders by the matrix's rows, the pop-ups'
/// closing (the missed-call pop-up to all managers, P3), and the call in the history.
/// `phone` is the customer's number when it is a valid one; a call without one (hidden
/// number) only goes to the history.
pub fn decide(
    summary: &CallSummary,
    phone: Option<&PhoneNumber>,
    source: Option<Source>,
    snapshot: &CrmSnapshot,
    config: &MatrixConfig,
) -> Vec<CrmAction> {
    let header = &summary.header;
    if header.direction == Direction::Internal {
        return Vec::new();
    }
    let Some(phone) = phone else {
        return Vec::new();
    };
    let mut d = Decision::new(header, phone, config, "e");
    let recording = recording_link(summary, config);
    // The manager who talked last is the one who answered; everyone who talked is named.
    let last = summary
        .talkers
        .last()
        .map(|t| t.extension.as_str())
        .or(summary.employee.as_deref());
    let answered = summary.outcome == Outcome::Answered && last.is_some();
    let who = if answered {
        handler(last, &config.directory)
    } else {
        Handler::Nobody
    };
    // A customer this call made earlier (at ring or answer) may already be in the CRM
    // when the call ends, found by the lookup with the order it made: still a new client.
    let client = if snapshot.earlier.created_anything() {
        ClientKind::New
    } else {
        classify(snapshot)
    };
    let context = Context::new(summary, phone, snapshot, &recording);
    d.missed = header.direction == Direction::Inbound && !answered;
    if let ClientKind::Existing(_, o) = client {
        d.open_order = Some(EntityRef::Id(o.id));
    }
    match header.direction {
        Direction::Inbound => {
            close_popups(&mut d, summary, answered);
            inbound(&mut d, summary, who, client, snapshot, source, &context);
        }
        Direction::Outbound => outbound(&mut d, who, client, answered, &context),
        Direction::Internal => {}
    }
    // What the call was about: the client and order it found, or those it (or an earlier
    // moment) made.
    let earlier = &snapshot.earlier;
    let made = |step: &Option<String>, before: &Option<String>| {
        step.clone().or_else(|| before.clone()).map(EntityRef::Step)
    };
    let about = match client {
        ClientKind::Existing(c, o) => (Some(EntityRef::Id(c.id)), Some(EntityRef::Id(o.id))),
        ClientKind::Returning(c) => (
            Some(EntityRef::Id(c.id)),
            made(&d.made_order, &earlier.order),
        ),
        ClientKind::New => (
            made(&d.made_customer, &earlier.customer),
            made(&d.made_order, &earlier.order),
        ),
    };
    d.actions.push(history(summary, phone, recording, about));
    d.actions
}

/// A call whose number is no valid phone number (a short service code, a caller id
/// the phone library cannot read): nobody's customer, so only its history record, under
/// the number as the PBX gave it.
pub fn decide_unverified(
    summary: &CallSummary,
    number: &str,
    config: &MatrixConfig,
) -> Vec<CrmAction> {
    if summary.header.direction == Direction::Internal || number.trim().is_empty() {
        return Vec::new();
    }
    let phone = PhoneNumber::as_given(number);
    vec![history(
        summary,
        &phone,
        recording_link(summary, config),
        (None, None),
    )]
}
