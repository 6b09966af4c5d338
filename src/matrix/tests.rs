//! The matrix's rows, one test each (named after the rows of docs/matrix.md), and the
//! fixtures every matrix test uses; `decided` has the cases beyond the rows,
//! `invariants` the walk over every combination.

use super::*;
use crate::call::{Talker, Voicemail};
use crate::phone::PhoneNormalizer;
use crate::time::Timestamp;

// The office: extensions 101-103 belong to users 3-5, 109 to nobody; user 7 is the
// senior manager; users 3, 4, 5 and 8 are the CRM's managers.
const ANNA: UserId = UserId::number(3);
const BORIS: UserId = UserId::number(4);
const SENIOR: UserId = UserId::number(7);
const CUSTOMER_STEP: &str = "cb-tel-79161234567";
const ORDER_STEP: &str = "cb-office-1795627488.2-order";

fn config(create_on: CreateOn) -> MatrixConfig {
    let mut directory = Directory::new(
        [
            ("101".to_string(), ANNA),
            ("102".to_string(), BORIS),
            ("103".to_string(), UserId::number(5)),
        ]
        .into(),
        vec![SENIOR],
    );
    directory.sync_managers([3, 4, 5, 8].map(UserId::number));
    MatrixConfig {
        create_on,
        order_method: "phone".into(),
        public_url: "https://cb.example.com".into(),
        link_key: crate::links::LinkKey::new("matrix-test-key"),
        link_ttl: std::time::Duration::from_secs(90 * 86_400),
        directory,
    }
}

/// A link without its `?exp=…&sig=…` (the signature is tested on its own).
fn unsigned(link: &str) -> String {
    match link.split_once("?exp=") {
        Some((path, rest)) => {
            let tail = rest.split_once(char::is_whitespace).map(|(_, t)| t);
            match tail {
                Some(t) => format!("{path} {t}"),
                None => path.to_string(),
            }
        }
        None => link.to_string(),
    }
}

fn phone() -> PhoneNumber {
    PhoneNormalizer::default()
        .normalize("89161234567")
        .expect("number")
}

fn summary(direction: Direction, outcome: Outcome, talkers: &[&str]) -> CallSummary {
    CallSummary {
        header: CallHeader {
            pbx: "office".into(),
            call_id: "1795627488.2".into(),
            direction,
            customer_number: Some("89161234567".into()),
            did: Some("74951234567".into()),
            started_at: Timestamp(1_000_000),
            campaign: Default::default(),
        },
        outcome,
        rang: if direction == Direction::Inbound {
            vec!["101".into(), "102".into()]
        } else {
            Vec::new()
        },
        employee: talkers.last().map(|t| t.to_string()),
        answered_at: None,
        ended_at: Timestamp(30_000_000),
        duration_secs: 29,
        talk_secs: if talkers.is_empty() { 0 } else { 20 },
        wait_secs: 9,
        talkers: talkers
            .iter()
            .map(|t| Talker {
                extension: t.to_string(),
                talk_secs: 10,
            })
            .collect(),
        recording: (!talkers.is_empty()).then(|| "/var/spool/asterisk/monitor/x.wav".into()),
        voicemail: (outcome == Outcome::Voicemail).then(|| Voicemail {
            mailbox: "101@default".into(),
            message: Some("/var/spool/asterisk/voicemail/default/101/INBOX/msg0000".into()),
        }),
        queue: None,
        channels: Vec::new(),
        reconstructed: false,
    }
}

fn order(id: u64, open: bool, manager: UserId) -> Order {
    Order {
        id: UserId::number(id),
        number: format!("{id}A"),
        manager_id: Some(manager),
        open,
        created_at: "2026-11-01 10:00:00".into(),
    }
}

/// A customer of `manager` with an open order (21).
fn existing(manager: UserId) -> Customer {
    Customer {
        id: UserId::number(11),
        name: "Ivan Petrov".into(),
        manager_id: Some(manager),
        last_activity: Some("2026-11-20 12:00:00".into()),
        orders: vec![order(20, false, manager), order(21, true, manager)],
    }
}

/// A customer of `manager` whose only order is closed.
fn returning(manager: UserId) -> Customer {
    Customer {
        id: UserId::number(12),
        name: "Olga Sidorova".into(),
        manager_id: Some(manager),
        last_activity: Some("2026-10-01 09:00:00".into()),
        orders: vec![order(22, false, manager)],
    }
}

fn snapshot(customers: Vec<Customer>) -> CrmSnapshot {
    CrmSnapshot {
        chosen: None,
        customers,
        earlier: Earlier::default(),
    }
}

fn entity(r: &EntityRef) -> String {
    match r {
        EntityRef::Id(id) => format!("#{id}"),
        EntityRef::ExternalId(x) => format!("ext:{x}"),
        EntityRef::Step(s) => format!("step:{s}"),
    }
}

/// One line per action, with everything a user would check.
fn describe(actions: &[CrmAction]) -> Vec<String> {
    actions
        .iter()
        .map(|a| match a {
            CrmAction::CreateCustomer(c) => format!(
                "customer {} phone={} manager={:?}",
                c.external_id, c.phone, c.manager_id
            ),
            CrmAction::CreateOrder(o) => format!(
                "order {} customer={} manager={:?} method={}",
                o.external_id,
                entity(&o.customer),
                o.manager_id,
                o.order_method.as_deref().unwrap_or("-")
            ),
            CrmAction::CreateTask(t) => format!(
                "task for {} on {} {}: {}",
                t.performer_id,
                t.order
                    .as_ref()
                    .map(|o| format!("order {}", entity(o)))
                    .or_else(|| t
                        .customer
                        .as_ref()
                        .map(|c| format!("customer {}", entity(c))))
                    .unwrap_or_else(|| "NOTHING".into()),
                if t.complete { "done" } else { "open" },
                t.text
            ),
            CrmAction::SetManager(m) => {
                format!(
                    "manager of {:?} {} -> {}",
                    m.entity,
                    entity(&m.target),
                    m.manager_id
                )
            }
            CrmAction::CallEvent(e) => format!(
                "popup {:?} codes={:?} users={:?} status={:?}",
                e.event, e.codes, e.user_ids, e.hangup_status
            ),
            CrmAction::Decide(d) => format!("decide {:?}", d.moment),
            CrmAction::CallHistory(h) => format!(
                "history {:?} {:?} phone={} code={:?} record={}",
                h.direction,
                h.result,
                h.phone,
                h.code,
                h.record_url.as_deref().map(unsigned).unwrap_or("-".into())
            ),
        })
        .collect()
}

fn ended(s: &CallSummary, snap: &CrmSnapshot, create_on: CreateOn) -> Vec<String> {
    describe(&decide(s, Some(&phone()), None, snap, &config(create_on)))
}

const RECORDING: &str = "https://cb.example.com/recordings/cb-office-1795627488.2";
const CLOSED_ANSWERED: &str =
    "popup Hangup codes=[\"101\", \"102\"] users=[] status=Some(Answered)";
const CLOSED_MISSED: &str =
    "popup Hangup codes=[\"101\", \"102\"] users=[3, 4, 5, 7, 8] status=Some(NoAnswered)";

fn history_in(result: &str, code: &str) -> String {
    format!("history Inbound {result} phone=+79161234567 code=Some(\"{code}\") record={RECORDING}")
}

#[test]
fn row_1_inbound_answered_new_client() {
    let s = summary(Direction::Inbound, Outcome::Answered, &["101"]);
    let c = config(CreateOn::Answer);
    // While it rings: the pop-up only.
    let ring = decide_ringing(
        &s.header,
        &phone(),
        &["101".into()],
        None,
        &snapshot(vec![]),
        &c,
    );
    assert_eq!(
        describe(&ring),
        vec!["popup In codes=[\"101\"] users=[] status=None"]
    );
    // At answer: customer and order, both for the manager who answered.
    let source = Source {
        source: Some("google".into()),
        medium: Some("cpc".into()),
        campaign: Some("winter".into()),
        keyword: None,
        content: None,
    };
    let answer = decide_answered(
        &s.header,
        &phone(),
        "101",
        Some(source.clone()),
        &snapshot(vec![]),
        &c,
    );
    assert_eq!(
        describe(&answer),
        vec![
            format!("customer {CUSTOMER_STEP} phone=+79161234567 manager=Some(3)"),
            format!(
                "order {ORDER_STEP} customer=step:{CUSTOMER_STEP} manager=Some(3) method=phone"
            ),
        ]
    );
    let CrmAction::CreateCustomer(customer) = &answer[0] else {
        panic!("customer first")
    };
    assert_eq!(
        customer.source.as_ref(),
        Some(&source),
        "UTM data on the customer"
    );
    // At hang-up: nothing is created again; the recording goes with the history record.
    let mut snap = snapshot(vec![]);
    snap.earlier = Earlier::from_actions(&answer);
    assert_eq!(
        ended(&s, &snap, CreateOn::Answer),
        vec![CLOSED_ANSWERED.to_string(), history_in("Answered", "101")]
    );
}

#[test]
fn row_1_customer_made_at_answer_and_found_at_hang_up_is_still_new() {
    // The customer and order made at answer were delivered before the call ended: the
    // lookup at hang-up finds them (a customer of Anna with an open order). No task.
    let s = summary(Direction::Inbound, Outcome::Answered, &["101"]);
    let mut snap = snapshot(vec![existing(ANNA)]);
    snap.earlier = Earlier {
        customer: Some(CUSTOMER_STEP.into()),
        order: Some(ORDER_STEP.into()),
        manager_id: Some(ANNA),
    };
    assert_eq!(
        ended(&s, &snap, CreateOn::Answer),
        vec![CLOSED_ANSWERED.to_string(), history_in("Answered", "101")]
    );
    // The same with create_on = "ring" (row 7): the senior manager's customer.
    snap.customers = vec![existing(SENIOR)];
    assert_eq!(
        ended(&s, &snap, CreateOn::Ring),
        vec![CLOSED_ANSWERED.to_string(), history_in("Answered", "101")]
    );
}

#[test]
fn row_1_answer_not_seen_creates_at_hang_up() {
    // A call reconstructed after a gap: the answer moment never came.
    let s = summary(Direction::Inbound, Outcome::Answered, &["102"]);
    assert_eq!(
        ended(&s, &snapshot(vec![]), CreateOn::Answer),
        vec![
            CLOSED_ANSWERED.to_string(),
            format!("customer {CUSTOMER_STEP} phone=+79161234567 manager=Some(4)"),
            format!(
                "order {ORDER_STEP} customer=step:{CUSTOMER_STEP} manager=Some(4) method=phone"
            ),
            history_in("Answered", "102"),
        ]
    );
}

#[test]
fn row_2a_answered_by_responsible_manager() {
    let s = summary(Direction::Inbound, Outcome::Answered, &["101"]);
    assert_eq!(
        ended(&s, &snapshot(vec![existing(ANNA)]), CreateOn::Answer),
        vec![
            CLOSED_ANSWERED.to_string(),
            "task for 3 on customer #11 done: Call with the client: inbound call +79161234567, talked: 101.".into(),
            history_in("Answered", "101"),
        ]
    );
}

#[test]
fn row_2b_answered_by_other_manager() {
    let s = summary(Direction::Inbound, Outcome::Answered, &["102"]);
    assert_eq!(
        ended(&s, &snapshot(vec![existing(ANNA)]), CreateOn::Answer),
        vec![
            CLOSED_ANSWERED.to_string(),
            "task for 4 on customer #11 done: Call with the client: inbound call +79161234567, talked: 102.".into(),
            "task for 3 on customer #11 open: Your client's call was answered by another manager (extension 102): review the call: inbound call +79161234567, talked: 102.".into(),
            history_in("Answered", "102"),
        ]
    );
}

#[test]
fn row_2c_answered_on_unmapped_extension() {
    let s = summary(Direction::Inbound, Outcome::Answered, &["109"]);
    // At answer: the pop-up goes to the senior manager (P2).
    let answer = decide_answered(
        &s.header,
        &phone(),
        "109",
        None,
        &snapshot(vec![existing(ANNA)]),
        &config(CreateOn::Answer),
    );
    assert_eq!(
        describe(&answer),
        vec!["popup In codes=[] users=[7] status=None"]
    );
    assert_eq!(
        ended(&s, &snapshot(vec![existing(ANNA)]), CreateOn::Answer),
        vec![
            CLOSED_ANSWERED.to_string(),
            "task for 7 on order #21 open: Answered on extension 109, which is mapped to no CRM user: check the integration settings and pass this call to the right manager: inbound call +79161234567, talked: 109.".into(),
            history_in("Answered", "109"),
        ]
    );
}

#[test]
fn row_3a_returning_client_answered_by_responsible_manager() {
    let s = summary(Direction::Inbound, Outcome::Answered, &["101"]);
    assert_eq!(
        ended(&s, &snapshot(vec![returning(ANNA)]), CreateOn::Answer),
        vec![
            CLOSED_ANSWERED.to_string(),
            "task for 3 on customer #12 done: Call with a returning client: inbound call +79161234567, talked: 101.".into(),
            format!("order {ORDER_STEP} customer=#12 manager=Some(3) method=phone"),
            history_in("Answered", "101"),
        ]
    );
}

#[test]
fn row_3b_returning_client_answered_by_other_manager() {
    let s = summary(Direction::Inbound, Outcome::Answered, &["102"]);
    assert_eq!(
        ended(&s, &snapshot(vec![returning(ANNA)]), CreateOn::Answer),
        vec![
            CLOSED_ANSWERED.to_string(),
            "task for 4 on customer #12 done: Call with a returning client: inbound call +79161234567, talked: 102.".into(),
            "manager of Customer #12 -> 4".into(),
            "task for 3 on customer #12 open: Your former client called again and was answered by the manager on extension 102, who is now responsible for them: inbound call +79161234567, talked: 102.".into(),
            format!("order {ORDER_STEP} customer=#12 manager=Some(4) method=phone"),
            history_in("Answered", "102"),
        ]
    );
}

#[test]
fn row_4a_missed_existing_client_with_order() {
    let s = summary(Direction::Inbound, Outcome::Missed, &[]);
    assert_eq!(
        ended(&s, &snapshot(vec![existing(ANNA)]), CreateOn::Answer),
        vec![
            CLOSED_MISSED.to_string(),
            "task for 7 on order #21 open: Missed call from a client with an open order: pass it to a manager: inbound call +79161234567.".into(),
            "history Inbound NoAnswer phone=+79161234567 code=Some(\"101\") record=-".into(),
        ]
    );
}

#[test]
fn row_4b_missed_new_client() {
    let s = summary(Direction::Inbound, Outcome::Missed, &[]);
    assert_eq!(
        ended(&s, &snapshot(vec![]), CreateOn::Answer),
        vec![
            CLOSED_MISSED.to_string(),
            format!("customer {CUSTOMER_STEP} phone=+79161234567 manager=Some(7)"),
            format!("order {ORDER_STEP} customer=step:{CUSTOMER_STEP} manager=Some(7) method=phone"),
            format!("task for 7 on order step:{ORDER_STEP} open: Missed call: call the client back or pass the call to a manager: inbound call +79161234567."),
            "history Inbound NoAnswer phone=+79161234567 code=Some(\"101\") record=-".into(),
        ]
    );
}

#[test]
fn row_5a_outbound_answered_by_responsible_manager() {
    let s = summary(Direction::Outbound, Outcome::Answered, &["101"]);
    assert_eq!(
        ended(&s, &snapshot(vec![existing(ANNA)]), CreateOn::Answer),
        vec![
            "task for 3 on customer #11 done: Outbound call, answered: outbound call +79161234567, talked: 101.".to_string(),
            format!("history Outbound Answered phone=+79161234567 code=Some(\"101\") record={RECORDING}"),
        ]
    );
}

#[test]
fn row_5b_outbound_answered_by_other_manager() {
    let s = summary(Direction::Outbound, Outcome::Answered, &["102"]);
    assert_eq!(
        ended(&s, &snapshot(vec![existing(ANNA)]), CreateOn::Answer),
        vec![
            "task for 4 on customer #11 done: Outbound call, answered: outbound call +79161234567, talked: 102.".to_string(),
            "task for 3 on customer #11 open: Another manager (extension 102) called your client: review the call: outbound call +79161234567, talked: 102.".into(),
            format!("history Outbound Answered phone=+79161234567 code=Some(\"102\") record={RECORDING}"),
        ]
    );
}

#[test]
fn row_5c_outbound_to_unknown_number() {
    let s = summary(Direction::Outbound, Outcome::Answered, &["101"]);
    assert_eq!(
        ended(&s, &snapshot(vec![]), CreateOn::Answer),
        vec![format!(
            "history Outbound Answered phone=+79161234567 code=Some(\"101\") record={RECORDING}"
        )]
    );
}

#[test]
fn row_6a_voicemail_new_number() {
    let s = summary(Direction::Inbound, Outcome::Voicemail, &[]);
    assert_eq!(
        ended(&s, &snapshot(vec![]), CreateOn::Answer),
        vec![
            CLOSED_MISSED.to_string(),
            format!("customer {CUSTOMER_STEP} phone=+79161234567 manager=Some(7)"),
            format!("order {ORDER_STEP} customer=step:{CUSTOMER_STEP} manager=Some(7) method=phone"),
            format!("task for 7 on order step:{ORDER_STEP} open: Call the client back: they left a voicemail: inbound call +79161234567."),
            format!("history Inbound NoAnswer phone=+79161234567 code=Some(\"101\") record={RECORDING}"),
        ]
    );
    let d = decide(
        &s,
        Some(&phone()),
        None,
        &snapshot(vec![]),
        &config(CreateOn::Answer),
    );
    let task = d.iter().find_map(|a| match a {
        CrmAction::CreateTask(t) => Some(t),
        _ => None,
    });
    assert_eq!(
        task.and_then(|t| t.commentary.as_deref().map(unsigned)),
        Some(format!("Recording: {RECORDING}")),
        "the voicemail's link is in the task"
    );
}

#[test]
fn recording_links_are_signed_and_valid_for_the_ttl_after_the_call() {
    let s = summary(Direction::Inbound, Outcome::Answered, &["101"]);
    let link = recording_link(&s, &config(CreateOn::Answer)).expect("a link");
    let (path, query) = link.split_once('?').expect("signed");
    assert_eq!(path, RECORDING);
    let exp = query
        .split('&')
        .find_map(|p| p.strip_prefix("exp="))
        .expect("exp");
    let sig = query
        .split('&')
        .find_map(|p| p.strip_prefix("sig="))
        .expect("sig");
    let key = crate::links::LinkKey::new("matrix-test-key");
    let id = s.header.external_id();
    assert_eq!(key.verify(&id, exp, sig, s.ended_at), Ok(()));
    let day_89 = Timestamp(s.ended_at.0 + 89 * 86_400_000_000);
    assert_eq!(key.verify(&id, exp, sig, day_89), Ok(()));
    let day_91 = Timestamp(s.ended_at.0 + 91 * 86_400_000_000);
    assert_eq!(
        key.verify(&id, exp, sig, day_91),
        Err(crate::links::LinkError::Expired)
    );
    assert_eq!(
        recording_link(&s, &config(CreateOn::Answer)),
        Some(link),
        "deciding again gives the same link"
    );
}

#[test]
fn row_6b_voicemail_existing_client_with_order() {
    let s = summary(Direction::Inbound, Outcome::Voicemail, &[]);
    assert_eq!(
        ended(&s, &snapshot(vec![existing(BORIS)]), CreateOn::Answer),
        vec![
            CLOSED_MISSED.to_string(),
            "task for 4 on order #21 open: Call the client back: they left a voicemail: inbound call +79161234567.".into(),
            format!("history Inbound NoAnswer phone=+79161234567 code=Some(\"101\") record={RECORDING}"),
        ]
    );
}

#[test]
fn row_7_create_on_ring_assigns_the_senior_manager() {
    let s = summary(Direction::Inbound, Outcome::Answered, &["101"]);
    let c = config(CreateOn::Ring);
    let ring = decide_ringing(
        &s.header,
        &phone(),
        &["101".into(), "102".into()],
        None,
        &snapshot(vec![]),
        &c,
    );
    assert_eq!(
        describe(&ring),
        vec![
            "popup In codes=[\"101\", \"102\"] users=[] status=None".to_string(),
            format!("customer {CUSTOMER_STEP} phone=+79161234567 manager=Some(7)"),
            format!(
                "order {ORDER_STEP} customer=step:{CUSTOMER_STEP} manager=Some(7) method=phone"
            ),
        ]
    );
    let mut snap = snapshot(vec![]);
    snap.earlier = Earlier::from_actions(&ring);
    // Nothing more at answer, nor at hang-up: the senior manager stays responsible.
    assert!(decide_answered(&s.header, &phone(), "101", None, &snap, &c).is_empty());
    assert_eq!(
        ended(&s, &snap, CreateOn::Ring),
        vec![CLOSED_ANSWERED.to_string(), history_in("Answered", "101")]
    );
}

mod decided;
mod invariants;
