//! The call matrix of DESIGN.md: what a call means for the CRM, given who the caller is
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

use crate::actions::{
    CallEvent, CallEventType, CallRecord, CallResult, CrmAction, Entity, EntityRef, HangupStatus,
    ManagerChange, NewCustomer, NewOrder, NewTask, Source,
};
use crate::call::{CallHeader, CallSummary, Direction, Outcome};
use crate::directory::{Directory, UserId};
use crate::phone::PhoneNumber;
use crate::time::Timestamp;

/// When the CRM records of a new caller are made (`[matrix] create_on`): once an
/// employee answered, or as the call starts ringing (row 7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CreateOn {
    Answer,
    Ring,
}

impl CreateOn {
    pub fn as_str(self) -> &'static str {
        match self {
            CreateOn::Answer => "answer",
            CreateOn::Ring => "ring",
        }
    }
}

impl std::fmt::Display for CreateOn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the matrix needs from the configuration.
#[derive(Debug, Clone)]
pub struct MatrixConfig {
    pub create_on: CreateOn,
    /// `orderMethod` of the orders made for calls (`[crm] order_method`, `phone`).
    pub order_method: String,
    /// `[http] public_url`: recording links point there.
    pub public_url: String,
    /// Recording links are signed with this key and valid this long after the call.
    pub link_key: crate::links::LinkKey,
    pub link_ttl: std::time::Duration,
    pub directory: Directory,
}

/// What the CRM knows of the caller, read just before deciding.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CrmSnapshot {
    /// The customers whose phone is the caller's number (matched on normalized numbers).
    pub customers: Vec<Customer>,
    /// What earlier moments of this call created.
    pub earlier: Earlier,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Customer {
    pub id: u64,
    pub name: String,
    pub manager_id: Option<UserId>,
    /// Latest activity (`Y-m-d H:i:s`, so text order is time order): when several
    /// customers share the number, the most recently active one is the caller.
    pub last_activity: Option<String>,
    pub orders: Vec<Order>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Order {
    pub id: u64,
    pub number: String,
    pub manager_id: Option<UserId>,
    /// Its status is in no final status group (complete, cancel).
    pub open: bool,
    /// `Y-m-d H:i:s`.
    pub created_at: String,
}

/// The customer and order an earlier moment of the same call decided to create (as the
/// outbox's step names), and their responsible manager.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Earlier {
    pub customer: Option<String>,
    pub order: Option<String>,
    pub manager_id: Option<UserId>,
}

impl Earlier {
    /// What `actions` (an earlier moment's decision) created.
    pub fn from_actions<'a>(actions: impl IntoIterator<Item = &'a CrmAction>) -> Earlier {
        let mut earlier = Earlier::default();
        for action in actions {
            match action {
                CrmAction::CreateCustomer(c) => {
                    earlier.customer = Some(c.external_id.clone());
                    earlier.manager_id = earlier.manager_id.or(c.manager_id);
                }
                CrmAction::CreateOrder(o) => {
                    earlier.order = Some(o.external_id.clone());
                    earlier.manager_id = o.manager_id.or(earlier.manager_id);
                }
                _ => {}
            }
        }
        earlier
    }

    fn created_anything(&self) -> bool {
        self.customer.is_some() || self.order.is_some()
    }
}

/// Who the caller is in the CRM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientKind<'a> {
    /// No customer has this number.
    New,
    /// A customer with an open order (the most recent open one).
    Existing(&'a Customer, &'a Order),
    /// A customer whose orders are all closed, or who has none.
    Returning(&'a Customer),
}

/// Who took the call for us.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handler<'a> {
    /// An extension mapped to a CRM user.
    Employee { extension: &'a str, user: UserId },
    /// An extension mapped to nobody.
    Unmapped { extension: &'a str },
    /// Nobody answered.
    Nobody,
}

/// The caller's customer: the most recently active one of those with the number.
pub fn classify(snapshot: &CrmSnapshot) -> ClientKind<'_> {
    let Some(customer) = snapshot
        .customers
        .iter()
        .max_by(|a, b| a.last_activity.cmp(&b.last_activity).then(a.id.cmp(&b.id)))
    else {
        return ClientKind::New;
    };
    match customer
        .orders
        .iter()
        .filter(|o| o.open)
        .max_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)))
    {
        Some(order) => ClientKind::Existing(customer, order),
        None => ClientKind::Returning(customer),
    }
}

fn handler<'a>(extension: Option<&'a str>, directory: &Directory) -> Handler<'a> {
    match extension {
        Some(extension) => match directory.user_of(extension) {
            Some(user) => Handler::Employee { extension, user },
            None => Handler::Unmapped { extension },
        },
        None => Handler::Nobody,
    }
}

/// The externalId of the customer made for a number: the same for every call from it.
pub fn customer_external_id(phone: &PhoneNumber) -> String {
    format!("cb-tel-{}", phone.digits())
}

/// The externalId of the order made for a call.
pub fn order_external_id(header: &CallHeader) -> String {
    format!("{}-order", header.external_id())
}

/// Builds one moment's actions; numbers the call's tasks.
struct Decision<'a> {
    header: &'a CallHeader,
    phone: &'a PhoneNumber,
    config: &'a MatrixConfig,
    /// Tasks are numbered per moment kind so that the same moment decided twice makes
    /// the same markers, and two moments never share one.
    moment: &'static str,
    tasks: usize,
    actions: Vec<CrmAction>,
}

impl<'a> Decision<'a> {
    fn new(
        header: &'a CallHeader,
        phone: &'a PhoneNumber,
        config: &'a MatrixConfig,
        moment: &'static str,
    ) -> Self {
        Decision {
            header,
            phone,
            config,
            moment,
            tasks: 0,
            actions: Vec::new(),
        }
    }

    fn senior(&self) -> Option<UserId> {
        self.config.directory.senior().first().copied()
    }

    /// A new customer and an order for them, both with `manager`; returns the order.
    fn create_customer_and_order(
        &mut self,
        manager: Option<UserId>,
        source: Option<Source>,
    ) -> EntityRef {
        let customer = customer_external_id(self.phone);
        self.actions.push(CrmAction::CreateCustomer(NewCustomer {
            external_id: customer.clone(),
            phone: self.phone.e164().to_string(),
            first_name: None,
            manager_id: manager,
            source: source.clone(),
        }));
        self.create_order(EntityRef::Step(customer), manager, source)
    }

    fn create_order(
        &mut self,
        customer: EntityRef,
        manager: Option<UserId>,
        source: Option<Source>,
    ) -> EntityRef {
        let order = order_external_id(self.header);
        self.actions.push(CrmAction::CreateOrder(NewOrder {
            external_id: order.clone(),
            customer,
            phone: self.phone.e164().to_string(),
            manager_id: manager,
            order_method: Some(self.config.order_method.clone()),
            status: None,
            source,
            comment: Some(format!(
                "Made by callbridge for the call {} from {}",
                self.header.external_id(),
                self.phone
            )),
        }));
        EntityRef::Step(order)
    }

    /// A task on a customer or an order (never on nothing, never for nobody).
    fn task(
        &mut self,
        performer: Option<UserId>,
        on: On,
        text: String,
        commentary: String,
        complete: bool,
    ) {
        let Some(performer) = performer else {
            return;
        };
        self.tasks += 1;
        let marker = format!(
            "{}#{}{}",
            self.header.external_id(),
            self.moment,
            self.tasks
        );
        let (customer, order) = match on {
            On::Customer(c) => (Some(c), None),
            On::Order(o) => (None, Some(o)),
        };
        self.actions.push(CrmAction::CreateTask(NewTask {
            marker,
            text,
            commentary: Some(commentary),
            performer_id: performer,
            customer,
            order,
            phone: Some(self.phone.e164().to_string()),
            complete,
        }));
    }

    fn popup(
        &mut self,
        event: CallEventType,
        codes: Vec<String>,
        user_ids: Vec<UserId>,
        hangup: Option<HangupStatus>,
    ) {
        if codes.is_empty() && user_ids.is_empty() {
            return;
        }
        self.actions.push(CrmAction::CallEvent(CallEvent {
            event,
            phone: self.phone.e164().to_string(),
            codes,
            user_ids,
            hangup_status: hangup,
            call_external_id: self.header.external_id(),
            external_phone: self.header.did.clone(),
        }));
    }
}

/// What a task hangs on.
enum On {
    Customer(EntityRef),
    Order(EntityRef),
}

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
    match header.direction {
        Direction::Inbound => {
            close_popups(&mut d, summary, answered);
            inbound(&mut d, summary, who, client, snapshot, source, &context);
        }
        Direction::Outbound => outbound(&mut d, who, client, answered, &context),
        Direction::Internal => {}
    }
    d.actions.push(history(summary, phone, recording));
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
    vec![history(summary, &phone, recording_link(summary, config))]
}

/// What every task text of a call says beside its own words.
struct Context {
    /// `inbound call +79161234567, talked: 101, 102`.
    call: String,
    /// The recording or voicemail link, as the commentary's first line.
    commentary: String,
    /// Said in every task when the number matched several customers.
    several: String,
}

impl Context {
    fn new(
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
            let chosen_id = match chosen {
                ClientKind::Existing(c, _) | ClientKind::Returning(c) => c.id,
                ClientKind::New => 0,
            };
            let list: Vec<String> = snapshot
                .customers
                .iter()
                .map(|c| format!("#{} {}", c.id, c.name))
                .collect();
            format!(
                " The number matched several customers ({}); this is #{chosen_id}, the most recently active.",
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

    fn text(&self, what: &str) -> String {
        format!("{what}: {}.{}", self.call, self.several)
    }
}

fn close_popups(d: &mut Decision<'_>, summary: &CallSummary, answered: bool) {
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

fn inbound(
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
        (Handler::Employee { user, .. }, ClientKind::Existing(c, _)) => handled(
            d,
            user,
            c,
            "Call with the client",
            &format!(
                "Your client's call was answered by another manager (user {user}): review the call"
            ),
            cx,
        ),
        // Row 3a / 3b: a returning client gets a new order; the manager who answered
        // becomes responsible when it was somebody else.
        (Handler::Employee { user, .. }, ClientKind::Returning(c)) => {
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
                    cx.text(&format!("Your former client called again and was answered by user {user}, who is now responsible for them")),
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

fn outbound(
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
        Handler::Employee { user, .. } => handled(
            d,
            user,
            customer,
            "Outbound call, answered",
            &format!("Another manager (user {user}) called your client: review the call"),
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
fn handled(
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

fn history(summary: &CallSummary, phone: &PhoneNumber, record_url: Option<String>) -> CrmAction {
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
    })
}

#[cfg(test)]
#[path = "matrix_tests.rs"]
mod tests;
