//! The rows of the matrix (docs/matrix.md): inbound and outbound calls by kind of client
//! and of employee, closing the pop-ups, and the call in the history with its recording
//! link.

use super::*;

/// What every task text of a call says beside its own words.
pub(super) struct Context {
    /// `inbound call +79161234567, talked: 101, 102`.
    pub(super) call: String,
    /// The recording or voicemail link, as the commentary's first line.
    pub(super) commentary: String,
    /// Said in every task when the number matched several customers.
    pub(super) several: String,
}

impl Context {
    pub(super) fn new(
        summary: &CallSummary,
        phone: &PhoneNumber,
        snapshot: &CrmSnapshot,
        recording: &Option<String>,
    ) -> Self {
        let talked: Vec<String> = summary
            .talkers
            .iter()
            .map(|t| t.extension.clone())
            .collect();
        let mut call = format!("{} call {phone}", summary.header.direction.as_str());
        if !talked.is_empty() {
            call.push_str(&format!(", talked: {}", talked.join(", ")));
        }
        let commentary = match recording {
            Some(link) => format!("Recording: {link}"),
            None => "No recording".to_string(),
        };
        let several = if snapshot.customers.len() > 1 {
            let chosen = classify(snapshot);
            let (chosen_id, why) = match chosen {
                ClientKind::Existing(c, _) | ClientKind::Returning(c) => (
                    c.id.to_string(),
                    if snapshot.chosen == Some(c.id) {
                        "chosen by the employee on the panel"
                    } else {
                        "the most recently active"
                    },
                ),
                ClientKind::New => ("?".to_string(), "the most recently active"),
            };
            let list: Vec<String> = snapshot
                .customers
                .iter()
                .map(|c| format!("#{} {}", c.id, c.name))
                .collect();
            format!(
                " The number matched several clients ({}); this is #{chosen_id}, {why}.",
                list.join(", ")
            )
        } else {
            String::new()
        };
        Context {
            call,
            commentary,
            several,
        }
    }

    pub(super) fn text(&self, what: &str) -> String {
        format!("{what}: {}.{}", self.call, self.several)
    }
}

pub(super) fn close_popups(d: &mut Decision<'_>, summary: &CallSummary, answered: bool) {
    let status = match summary.outcome {
        Outcome::Answered if answered => HangupStatus::Answered,
        Outcome::Busy => HangupStatus::Busy,
        Outcome::Failed => HangupStatus::Failed,
        _ => HangupStatus::NoAnswered,
    };
    // A missed call pops up for every manager (P3); otherwise the pop-ups that rang close.
    let users = if answered {
        Vec::new()
    } else {
        d.config.directory.all_managers()
    };
    d.popup(
        CallEventType::Hangup,
        summary.rang.clone(),
        users,
        Some(status),
    );
}

pub(super) fn inbound(
    d: &mut Decision<'_>,
    summary: &CallSummary,
    who: Handler<'_>,
    client: ClientKind<'_>,
    snapshot: &CrmSnapshot,
    source: Option<Source>,
    cx: &Context,
) {
    let senior = d.senior();
    let earlier = &snapshot.earlier;
    // The order this call made earlier (row 1 at answer, row 7 at ring), if any.
    let earlier_order = earlier.order.clone().map(EntityRef::Step);
    let voicemail = summary.outcome == Outcome::Voicemail;
    match (who, client) {
        // Row 1 (its hang-up half): the customer and order were made at answer; the
        // recording reaches the customer with the call's history record. Made now when
        // the answer was not seen (a call reconstructed after a gap).
        (Handler::Employee { user, .. }, ClientKind::New) => {
            if earlier_order.is_none() {
                d.create_customer_and_order(Some(user), source);
            }
        }
        // Row 2c: answered on an extension nobody is mapped to.
        (Handler::Unmapped { extension }, client) => {
            let on = match client {
                ClientKind::New => On::Order(match earlier_order {
                    Some(o) => o,
                    None => d.create_customer_and_order(senior, source),
                }),
                ClientKind::Existing(_, o) => On::Order(EntityRef::Id(o.id)),
                ClientKind::Returning(c) => On::Customer(EntityRef::Id(c.id)),
            };
            d.task(
                senior,
                on,
                cx.text(&format!(
                    "Answered on extension {extension}, which is mapped to no CRM user: check the integration settings and pass this call to the right manager"
                )),
                cx.commentary.clone(),
                false,
            );
        }
        // Row 2a / 2b.
        (Handler::Employee { user, extension }, ClientKind::Existing(c, _)) => handled(
            d,
            user,
            c,
            "Call with the client",
            &format!(
                "Your client's call was answered by another manager (extension {extension}): review the call"
            ),
            cx,
        ),
        // Row 3a / 3b: a returning client gets a new order; the manager who answered
        // becomes responsible when it was somebody else.
        (Handler::Employee { user, extension }, ClientKind::Returning(c)) => {
            d.task(
                Some(user),
                On::Customer(EntityRef::Id(c.id)),
                cx.text("Call with a returning client"),
                cx.commentary.clone(),
                true,
            );
            if c.manager_id != Some(user) {
                d.actions.push(CrmAction::SetManager(ManagerChange {
                    entity: Entity::Customer,
                    target: EntityRef::Id(c.id),
                    manager_id: user,
                }));
                d.task(
                    c.manager_id.or(senior),
                    On::Customer(EntityRef::Id(c.id)),
                    cx.text(&format!("Your former client called again and was answered by the manager on extension {extension}, who is now responsible for them")),
                    cx.commentary.clone(),
                    false,
                );
            }
            if earlier_order.is_none() {
                d.create_order(EntityRef::Id(c.id), Some(user), source);
            }
        }
        // Rows 4a / 6b: missed or voicemail, the client has an open order.
        (Handler::Nobody, ClientKind::Existing(c, o)) => {
            if voicemail {
                d.task(
                    c.manager_id.or(senior),
                    On::Order(EntityRef::Id(o.id)),
                    cx.text("Call the client back: they left a voicemail"),
                    cx.commentary.clone(),
                    false,
                );
            } else {
                d.task(
                    senior,
                    On::Order(EntityRef::Id(o.id)),
                    cx.text("Missed call from a client with an open order: pass it to a manager"),
                    cx.commentary.clone(),
                    false,
                );
            }
        }
        // Rows 4b / 6a, and the decided cases for a returning client (a new order, no
        // new customer): everything for the senior manager.
        (Handler::Nobody, client) => {
            let order = match (earlier_order, client) {
                (Some(o), _) => o,
                (None, ClientKind::Returning(c)) => {
                    d.create_order(EntityRef::Id(c.id), senior, source)
                }
                (None, _) => d.create_customer_and_order(senior, source),
            };
            let text = if voicemail {
                "Call the client back: they left a voicemail"
            } else {
                "Missed call: call the client back or pass the call to a manager"
            };
            d.task(
                senior,
                On::Order(order),
                cx.text(text),
                cx.commentary.clone(),
                false,
            );
        }
    }
}

pub(super) fn outbound(
    d: &mut Decision<'_>,
    who: Handler<'_>,
    client: ClientKind<'_>,
    answered: bool,
    cx: &Context,
) {
    // Row 5c and unanswered outbound calls: the history only.
    let customer = match client {
        ClientKind::Existing(c, _) | ClientKind::Returning(c) => c,
        ClientKind::New => return,
    };
    if !answered {
        return;
    }
    let senior = d.senior();
    match who {
        // Row 5a / 5b.
        Handler::Employee { user, extension } => handled(
            d,
            user,
            customer,
            "Outbound call, answered",
            &format!("Another manager (extension {extension}) called your client: review the call"),
            cx,
        ),
        Handler::Unmapped { extension } => d.task(
            senior,
            On::Customer(EntityRef::Id(customer.id)),
            cx.text(&format!(
                "Outbound call from extension {extension}, which is mapped to no CRM user: check the integration settings"
            )),
            cx.commentary.clone(),
            false,
        ),
        Handler::Nobody => {}
    }
}

/// `user` talked with a client of the CRM (rows 2a/2b, 5a/5b): a completed task for
/// them with the recording; when the client is somebody else's, an open task for the
/// responsible manager (the senior manager when nobody is) to review the call.
pub(super) fn handled(
    d: &mut Decision<'_>,
    user: UserId,
    customer: &Customer,
    done: &str,
    review: &str,
    cx: &Context,
) {
    let on = || On::Customer(EntityRef::Id(customer.id));
    d.task(Some(user), on(), cx.text(done), cx.commentary.clone(), true);
    if customer.manager_id != Some(user) {
        let responsible = customer.manager_id.or(d.senior());
        d.task(
            responsible,
            on(),
            cx.text(review),
            cx.commentary.clone(),
            false,
        );
    }
}

/// The link to listen to the call: its recording, or the voicemail the caller left.
pub fn recording_link(summary: &CallSummary, config: &MatrixConfig) -> Option<String> {
    let has_audio = summary.recording.is_some()
        || summary
            .voicemail
            .as_ref()
            .is_some_and(|v| v.message.is_some());
    // Valid from the call's end, so that deciding again gives the same link.
    let expires = Timestamp(
        summary
            .ended_at
            .0
            .saturating_add(i64::try_from(config.link_ttl.as_micros()).unwrap_or(i64::MAX)),
    );
    has_audio.then(|| {
        config
            .link_key
            .link(&config.public_url, &summary.header.external_id(), expires)
    })
}

pub(super) fn history(
    summary: &CallSummary,
    phone: &PhoneNumber,
    record_url: Option<String>,
    about: (Option<EntityRef>, Option<EntityRef>),
) -> CrmAction {
    let header = &summary.header;
    CrmAction::CallHistory(CallRecord {
        date: header.started_at,
        direction: header.direction,
        phone: phone.e164().to_string(),
        code: summary
            .talkers
            .last()
            .map(|t| t.extension.clone())
            .or_else(|| summary.employee.clone())
            .or_else(|| summary.rang.first().cloned()),
        result: match summary.outcome {
            Outcome::Answered => CallResult::Answered,
            Outcome::Busy => CallResult::Busy,
            Outcome::Failed => CallResult::Failed,
            Outcome::Missed | Outcome::Voicemail => CallResult::NoAnswer,
        },
        duration: summary.talk_secs,
        duration_waiting: summary.wait_secs,
        external_id: header.external_id(),
        external_phone: header.did.clone(),
        record_url,
        customer: about.0,
        order: about.1,
    })
}
