//! The matrix on Creatio, end to end, on both PBXs: for each row of docs/matrix.md the
//! Creatio simulator is given the caller the row needs (nobody; a contact with an open
//! case; a contact whose cases are all final), a call recorded from a real Asterisk 22 or
//! FreeSWITCH 1.10 is played through the real daemon over real sockets, and the records
//! Creatio holds are checked: contacts, cases, activities (who, done or not, on which
//! case), calls, queue items.
//!
//! 101 is Anna, 102 Boris, the senior manager Svetlana (contacts of the simulator).

mod common;

use common::creatio::{anna, boris, senior, CreatioHarness, Side};
use serde_json::Value;

const COMPLETED: &str = "4bdbb88f-58e6-df11-971b-001d60e938c6";
const NOT_STARTED: &str = "384d4b84-58e6-df11-971b-001d60e938c6";
const TASK: &str = "fbe0acdc-cfc0-df11-b00f-001d60e938c6";
const INCOMING: &str = "1d96a65f-2131-4916-8825-2d142b1000b2";
const OUTGOING: &str = "53f71b5f-7e17-4cf5-bf14-6a59212db422";
const EMPTY: &str = "00000000-0000-0000-0000-000000000000";

fn s(v: &Value, column: &str) -> String {
    v[column].as_str().unwrap_or_default().to_string()
}

/// Activities made: (owner, done, contact, case), sorted.
fn activities(h: &CreatioHarness) -> Vec<(String, bool, String, String)> {
    let mut a: Vec<_> = h
        .made("Activity")
        .iter()
        .map(|a| {
            assert_eq!(s(a, "TypeId"), TASK, "an activity of type Task: {a:#}");
            let done = match s(a, "StatusId").as_str() {
                COMPLETED => true,
                NOT_STARTED => false,
                other => panic!("status {other} of {a:#}"),
            };
            (s(a, "OwnerId"), done, s(a, "ContactId"), s(a, "CaseId"))
        })
        .collect();
    a.sort();
    a
}

/// The one `Call` made, checked for what every call carries.
fn the_call(h: &CreatioHarness, direction: &str, number: &str) -> Value {
    let calls = h.made("Call");
    assert_eq!(calls.len(), 1, "one Call: {calls:#?}");
    let c = calls[0].clone();
    assert!(!s(&c, "IntegrationId").is_empty(), "{c:#}");
    assert_eq!(s(&c, "DirectionId"), direction);
    let party = if direction == INCOMING {
        "CallerId"
    } else {
        "CalledId"
    };
    assert!(s(&c, party).ends_with(number), "{party} of {c:#}");
    assert!(
        c["StartDate"].is_string() && c["EndDate"].is_string(),
        "{c:#}"
    );
    assert!(c["Duration"].as_i64().unwrap_or(0) >= c["TalkTime"].as_i64().unwrap_or(0));
    c
}

fn new_case_checks(case: &Value, contact: &str, owner: &str) {
    assert_eq!(s(case, "ContactId"), contact, "{case:#}");
    assert_eq!(s(case, "OwnerId"), owner, "{case:#}");
    assert_eq!(
        s(case, "StatusId"),
        "ae5f2f10-f46b-1410-fd9a-0050ba5d6c38",
        "New"
    );
    assert_eq!(
        s(case, "OriginId"),
        callbridge::tools::sim::creatio::seed::ORIGIN_CALL
    );
    assert_eq!(
        s(case, "CategoryId"),
        "1c0bc159-150a-e111-a31b-00155d04c01d",
        "Service request"
    );
    assert_eq!(
        s(case, "PriorityId"),
        callbridge::tools::sim::creatio::seed::CASE_PRIORITY_MEDIUM
    );
    assert!(!s(case, "Subject").is_empty() && case["RegisteredOn"].is_string());
}

fn fixture(side: Side, name: &str) -> String {
    match side {
        Side::Asterisk => format!("iax2/{name}"),
        Side::FreeSwitch => name.to_string(),
    }
}

async fn row_1(side: Side) {
    let h = CreatioHarness::start(side).await;
    h.play(&fixture(side, "inbound_answered")).await;
    let contacts = h.made("Contact");
    assert_eq!(contacts.len(), 1, "{contacts:#?}");
    let contact = s(&contacts[0], "Id");
    assert_eq!(
        s(&contacts[0], "OwnerId"),
        anna(),
        "the manager who answered"
    );
    assert!(s(&contacts[0], "Name").ends_with("9161234567"));
    let comms = h.made("ContactCommunication");
    assert_eq!(comms.len(), 1);
    assert_eq!(s(&comms[0], "ContactId"), contact);
    assert!(
        s(&comms[0], "Number").ends_with("9161234567"),
        "{:#}",
        comms[0]
    );
    assert_eq!(
        s(&comms[0], "SearchNumber"),
        "76543216197",
        "Creatio's reversed digits"
    );
    let cases = h.made("Case");
    assert_eq!(cases.len(), 1);
    new_case_checks(&cases[0], &contact, &anna());
    assert!(activities(&h).is_empty(), "no task for a new client");
    let call = the_call(&h, INCOMING, "9161234567");
    assert_eq!(s(&call, "ContactId"), contact);
    assert_eq!(s(&call, "CaseId"), s(&cases[0], "Id"));
    assert!(call["TalkTime"].as_i64().unwrap_or(0) > 0);
    assert!(h.made("QueueItem").is_empty());
    h.stop().await;
}

async fn row_2a(side: Side) {
    let h = CreatioHarness::start(side).await;
    let contact = h.seed_contact("Ivan Petrov", "8 (916) 123-45-67", &anna());
    let case = h.seed_case(&contact, &anna(), true);
    h.play(&fixture(side, "inbound_answered")).await;
    assert!(h.made("Contact").is_empty() && h.made("Case").is_empty());
    assert_eq!(
        activities(&h),
        vec![(anna(), true, contact.clone(), case.clone())]
    );
    let call = the_call(&h, INCOMING, "9161234567");
    assert_eq!(
        (s(&call, "ContactId"), s(&call, "CaseId")),
        (contact, case),
        "consult on the open case"
    );
    h.stop().await;
}

async fn row_2b(side: Side) {
    let h = CreatioHarness::start(side).await;
    let contact = h.seed_contact("Ivan Petrov", "+7 916 123 45 67", &boris());
    let case = h.seed_case(&contact, &boris(), true);
    h.play(&fixture(side, "inbound_answered")).await;
    let mut want = vec![
        (anna(), true, contact.clone(), case.clone()),
        (boris(), false, contact.clone(), case.clone()),
    ];
    want.sort();
    assert_eq!(activities(&h), want);
    assert!(h.made("Case").is_empty());
    the_call(&h, INCOMING, "9161234567");
    h.stop().await;
}

async fn row_2c(side: Side) {
    let h = CreatioHarness::start_custom(side, Default::default(), |t| {
        t.replace(&format!("\"102\" = \"{}\"\n", boris()), "")
    })
    .await;
    let contact = h.seed_contact("Olga", "+79261112233", &anna());
    let case = h.seed_case(&contact, &anna(), true);
    h.play(&fixture(side, "ring_group_second_answers")).await;
    let a = activities(&h);
    assert!(
        a.contains(&(senior(), false, contact.clone(), case.clone())),
        "{a:#?}"
    );
    h.stop().await;
}

async fn row_3a(side: Side) {
    let h = CreatioHarness::start(side).await;
    let contact = h.seed_contact("Ivan", "89161234567", &anna());
    let old = h.seed_case(&contact, &anna(), false);
    h.play(&fixture(side, "inbound_answered")).await;
    let cases = h.made("Case");
    assert_eq!(cases.len(), 1, "a new case for a returning client");
    new_case_checks(&cases[0], &contact, &anna());
    let new = s(&cases[0], "Id");
    assert_ne!(new, old);
    let a = activities(&h);
    assert_eq!(a.len(), 1, "{a:#?}");
    assert_eq!(
        (a[0].0.as_str(), a[0].1, a[0].2.as_str()),
        (anna().as_str(), true, contact.as_str())
    );
    h.stop().await;
}

async fn row_3b(side: Side) {
    let h = CreatioHarness::start(side).await;
    let contact = h.seed_contact("Ivan", "89161234567", &boris());
    h.seed_case(&contact, &boris(), false);
    h.play(&fixture(side, "inbound_answered")).await;
    let owner = h
        .crm
        .records("Contact")
        .into_iter()
        .find(|c| s(c, "Id") == contact)
        .map(|c| s(&c, "OwnerId"));
    assert_eq!(
        owner,
        Some(anna()),
        "the one who answered becomes the contact's owner"
    );
    let cases = h.made("Case");
    assert_eq!(cases.len(), 1);
    new_case_checks(&cases[0], &contact, &anna());
    let a = activities(&h);
    assert!(a.iter().any(|t| t.0 == anna() && t.1), "{a:#?}");
    assert!(a.iter().any(|t| t.0 == boris() && !t.1), "{a:#?}");
    h.stop().await;
}

async fn row_4a(side: Side) {
    let h = CreatioHarness::start(side).await;
    let contact = h.seed_contact("Pavel", "+7 (903) 555-66-77", &boris());
    let case = h.seed_case(&contact, &boris(), true);
    h.play(&fixture(side, "inbound_missed")).await;
    assert_eq!(
        activities(&h),
        vec![(senior(), false, contact.clone(), case.clone())]
    );
    let queued = h.made("QueueItem");
    assert_eq!(
        queued.len(),
        1,
        "the missed call waits in the operators' queue: {queued:#?}"
    );
    assert_eq!(
        s(&queued[0], "QueueId"),
        callbridge::tools::sim::creatio::seed::MISSED_CALLS_QUEUE
    );
    assert_eq!(s(&queued[0], "EntityRecordId"), case);
    assert_eq!(
        s(&queued[0], "StatusId"),
        "2b341a1d-6fa1-4960-9c85-fef60d1bbcc4",
        "New"
    );
    assert!(
        s(&queued[0], "Caption").contains("9035556677"),
        "{:#}",
        queued[0]
    );
    let call = the_call(&h, INCOMING, "9035556677");
    assert_eq!(call["TalkTime"].as_i64(), Some(0));
    h.stop().await;
}

async fn row_4b(side: Side) {
    let h = CreatioHarness::start(side).await;
    h.play(&fixture(side, "inbound_missed")).await;
    let contacts = h.made("Contact");
    assert_eq!(contacts.len(), 1);
    let contact = s(&contacts[0], "Id");
    assert_eq!(s(&contacts[0], "OwnerId"), senior());
    let cases = h.made("Case");
    assert_eq!(cases.len(), 1);
    new_case_checks(&cases[0], &contact, &senior());
    let case = s(&cases[0], "Id");
    assert_eq!(
        activities(&h),
        vec![(senior(), false, contact, case.clone())]
    );
    let queued = h.made("QueueItem");
    assert_eq!(queued.len(), 1);
    assert_eq!(s(&queued[0], "EntityRecordId"), case);
    h.stop().await;
}

async fn row_5a(side: Side) {
    let h = CreatioHarness::start(side).await;
    let contact = h.seed_contact("Client", "89031112233", &anna());
    h.play(&fixture(side, "outbound_answered")).await;
    let a = activities(&h);
    assert_eq!(a.len(), 1, "{a:#?}");
    assert_eq!(
        (a[0].0.clone(), a[0].1, a[0].2.clone()),
        (anna(), true, contact.clone())
    );
    let call = the_call(&h, OUTGOING, "9031112233");
    assert_eq!(s(&call, "ContactId"), contact);
    assert!(h.made("QueueItem").is_empty());
    h.stop().await;
}

async fn row_5b(side: Side) {
    let h = CreatioHarness::start(side).await;
    let contact = h.seed_contact("Client", "89031112233", &boris());
    h.play(&fixture(side, "outbound_answered")).await;
    let a = activities(&h);
    assert_eq!(a.len(), 2, "{a:#?}");
    assert!(a.iter().any(|t| t.0 == anna() && t.1 && t.2 == contact));
    assert!(a.iter().any(|t| t.0 == boris() && !t.1 && t.2 == contact));
    h.stop().await;
}

async fn row_5c(side: Side) {
    let h = CreatioHarness::start(side).await;
    h.play(&fixture(side, "outbound_answered")).await;
    assert!(h.made("Contact").is_empty() && h.made("Case").is_empty());
    assert!(activities(&h).is_empty());
    let call = the_call(&h, OUTGOING, "9031112233");
    assert_eq!(s(&call, "ContactId"), EMPTY);
    h.stop().await;
}

async fn row_6a(side: Side) {
    let h = CreatioHarness::start(side).await;
    h.play(&fixture(side, "inbound_voicemail")).await;
    let contacts = h.made("Contact");
    assert_eq!(contacts.len(), 1);
    assert_eq!(s(&contacts[0], "OwnerId"), senior());
    let cases = h.made("Case");
    assert_eq!(cases.len(), 1);
    let a = activities(&h);
    assert_eq!(
        a,
        vec![(senior(), false, s(&contacts[0], "Id"), s(&cases[0], "Id"))]
    );
    h.stop().await;
}

async fn row_6b(side: Side) {
    let h = CreatioHarness::start(side).await;
    let contact = h.seed_contact("Client", "+79167778800", &boris());
    let case = h.seed_case(&contact, &boris(), true);
    h.play(&fixture(side, "inbound_voicemail")).await;
    assert_eq!(activities(&h), vec![(boris(), false, contact, case)]);
    assert!(h.made("Case").is_empty());
    h.stop().await;
}

macro_rules! rows {
    ($($test:ident => $row:ident;)*) => {
        mod asterisk {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    $row(Side::Asterisk).await;
                }
            )*
        }
        mod freeswitch {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    $row(Side::FreeSwitch).await;
                }
            )*
        }
    };
}

rows! {
    creatio_row_1_inbound_answered_new_client => row_1;
    creatio_row_2a_answered_by_responsible_manager => row_2a;
    creatio_row_2b_answered_by_other_manager => row_2b;
    creatio_row_2c_answered_on_unmapped_extension => row_2c;
    creatio_row_3a_returning_client_answered_by_responsible_manager => row_3a;
    creatio_row_3b_returning_client_answered_by_other_manager => row_3b;
    creatio_row_4a_missed_existing_client_with_case => row_4a;
    creatio_row_4b_missed_new_client => row_4b;
    creatio_row_5a_outbound_answered_by_responsible_manager => row_5a;
    creatio_row_5b_outbound_answered_by_other_manager => row_5b;
    creatio_row_5c_outbound_to_unknown_number => row_5c;
    creatio_row_6a_voicemail_new_number => row_6a;
    creatio_row_6b_voicemail_existing_client_with_case => row_6b;
}
