//! The matrix end to end: for each row of docs/matrix.md, the retailCRM stand-in is seeded
//! with the caller as the row needs (no customer, one with an open order, one whose
//! orders are all closed), a call recorded from a real Asterisk is played through the
//! real daemon over a real socket, and the stand-in's records are checked: which
//! customers, orders and tasks exist, who is responsible, which tasks are complete.
//!
//! The office of the recordings: 101 is Anna (user 3), 102 Boris (user 4), the senior
//! manager is Svetlana (user 7).

mod common;

use bytes::Bytes;
use callbridge::tools::sim::retailcrm::{SimState, Task};
use callbridge::tools::sim::transcript::Transcript;
use common::{fixture, Harness};
use serde_json::json;

const ANNA: u64 = 3;
const BORIS: u64 = 4;
const SENIOR: u64 = 7;

/// Seeds a customer with `phone`, responsible `manager`, and one order in `status`.
fn seed(h: &Harness, phone: &str, manager: u64, status: &str) -> (u64, u64) {
    let customer = h
        .crm
        .seed_customer(json!({
            "firstName": "Ivan", "lastName": "Seeded", "managerId": manager,
            // Written the way a manager would type it: the match is on the number.
            "phones": [{"number": phone}],
        }))
        .expect("seed customer");
    let order = h
        .crm
        .seed_order(json!({"customer": {"id": customer}, "status": status, "managerId": manager}))
        .expect("seed order");
    (customer, order)
}

async fn play(h: &Harness, t: &Transcript) {
    h.pbx.play(t, 20.0).await;
    h.wait_outbox_settled().await;
    let dead = h
        .running
        .store
        .list_actions(callbridge::store::ActionFilter::Dead, 10)
        .await
        .expect("dead");
    assert!(dead.is_empty(), "nothing refused: {dead:#?}");
}

/// Tasks by (performer, complete, on customer id, on order id).
fn tasks(state: &SimState) -> Vec<(u64, bool, Option<u64>, Option<u64>)> {
    let mut t: Vec<_> = state
        .tasks
        .iter()
        .map(|t: &Task| {
            (
                t.performer_id,
                t.complete,
                t.customer.as_ref().map(|c| c.id),
                t.order.as_ref().map(|o| o.id),
            )
        })
        .collect();
    t.sort();
    t
}

/// The recording adds campaign variables the way a call-tracking dialplan sets them.
fn with_campaign(mut t: Transcript, uniqueid: &str) -> Transcript {
    let at = t
        .chunks
        .iter()
        .position(|(_, b)| b.windows(10).any(|w| w == b"Newchannel"))
        .expect("a Newchannel");
    let when = t.chunks[at].0;
    let mut frames = String::new();
    for (name, value) in [
        ("UTM_SOURCE", "yandex"),
        ("UTM_MEDIUM", "cpc"),
        ("UTM_CAMPAIGN", "winter-sale"),
    ] {
        frames.push_str(&format!(
            "Event: VarSet\r\nPrivilege: dialplan,all\r\nChannel: IAX2/trunk-15474\r\nUniqueid: {uniqueid}\r\nLinkedid: {uniqueid}\r\nVariable: {name}\r\nValue: {value}\r\n\r\n"
        ));
    }
    t.chunks.insert(at + 1, (when, Bytes::from(frames)));
    t
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_1_new_client_answered_gets_customer_and_order_with_campaign() {
    let h = Harness::start().await;
    play(
        &h,
        &with_campaign(fixture("iax2/inbound_answered"), "1795627488.2"),
    )
    .await;
    let s = h.crm.state();
    assert_eq!(s.customers.len(), 1, "{:#?}", s.customers);
    assert_eq!(s.orders.len(), 1);
    let (c, o) = (&s.customers[0], &s.orders[0]);
    assert_eq!(c.manager_id, Some(ANNA), "the manager who answered");
    assert_eq!(o.manager_id, Some(ANNA));
    assert_eq!(o.customer.as_ref().map(|r| r.id), Some(c.id));
    assert_eq!(o.order_method.as_deref(), Some("phone"));
    assert!(
        c.phones.iter().any(|p| p.number.ends_with("9161234567")),
        "{:?}",
        c.phones
    );
    let source = c.extra.get("source").expect("customer source");
    assert_eq!(source["source"], "yandex");
    assert_eq!(source["medium"], "cpc");
    assert_eq!(source["campaign"], "winter-sale");
    assert!(
        s.tasks.is_empty(),
        "no task for a new client: {:#?}",
        s.tasks
    );
    // The recording reaches the customer with the history record.
    assert_eq!(s.calls.len(), 1);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_2a_existing_client_answered_by_responsible_manager() {
    let h = Harness::start().await;
    let (customer, _) = seed(&h, "8 (916) 123-45-67", ANNA, "new");
    play(&h, &fixture("iax2/inbound_answered")).await;
    let s = h.crm.state();
    assert_eq!(s.customers.len(), 1, "no new customer");
    assert_eq!(s.orders.len(), 1, "no new order");
    assert_eq!(tasks(&s), vec![(ANNA, true, Some(customer), None)]);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_2b_answered_by_other_manager() {
    let h = Harness::start().await;
    let (customer, _) = seed(&h, "+7 916 123-45-67", BORIS, "assembling");
    play(&h, &fixture("iax2/inbound_answered")).await;
    let s = h.crm.state();
    assert_eq!(s.customers.len(), 1);
    assert_eq!(
        tasks(&s),
        vec![
            (ANNA, true, Some(customer), None),
            (BORIS, false, Some(customer), None)
        ],
        "done task for Anna who answered, open review task for Boris"
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_2c_answered_on_unmapped_extension() {
    // 102 answers the ring group; here 102 is mapped to nobody.
    let h = Harness::start_custom(common::crm_options(), |t| t.replace("\"102\" = 4\n", "")).await;
    let (_, order) = seed(&h, "79261112233", ANNA, "new");
    play(&h, &fixture("iax2/ring_group_second_answers")).await;
    let s = h.crm.state();
    assert_eq!(tasks(&s), vec![(SENIOR, false, None, Some(order))]);
    let to_senior = s
        .call_events
        .iter()
        .any(|e| e.r#type == "in" && e.user_ids.contains(&SENIOR));
    assert!(
        to_senior,
        "pop-up to the senior manager: {:#?}",
        s.call_events
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_3a_returning_client_answered_by_responsible_manager() {
    let h = Harness::start().await;
    let (customer, _) = seed(&h, "89161234567", ANNA, "complete");
    play(&h, &fixture("iax2/inbound_answered")).await;
    let s = h.crm.state();
    assert_eq!(s.customers.len(), 1);
    assert_eq!(s.orders.len(), 2, "a new order");
    let new = s.orders.iter().max_by_key(|o| o.id).expect("order");
    assert_eq!(new.manager_id, Some(ANNA));
    assert_eq!(new.customer.as_ref().map(|c| c.id), Some(customer));
    assert_eq!(tasks(&s), vec![(ANNA, true, Some(customer), None)]);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_3b_returning_client_answered_by_other_manager() {
    let h = Harness::start().await;
    let (customer, _) = seed(&h, "89161234567", BORIS, "no-call");
    play(&h, &fixture("iax2/inbound_answered")).await;
    let s = h.crm.state();
    let c = s
        .customers
        .iter()
        .find(|c| c.id == customer)
        .expect("customer");
    assert_eq!(
        c.manager_id,
        Some(ANNA),
        "the manager who answered is responsible now"
    );
    let new = s.orders.iter().max_by_key(|o| o.id).expect("order");
    assert_eq!(s.orders.len(), 2);
    assert_eq!(new.manager_id, Some(ANNA));
    assert_eq!(
        tasks(&s),
        vec![
            (ANNA, true, Some(customer), None),
            (BORIS, false, Some(customer), None)
        ]
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_4a_missed_existing_client_with_order() {
    let h = Harness::start().await;
    let (_, order) = seed(&h, "+79035556677", ANNA, "new");
    play(&h, &fixture("iax2/inbound_missed")).await;
    let s = h.crm.state();
    assert_eq!((s.customers.len(), s.orders.len()), (1, 1));
    assert_eq!(tasks(&s), vec![(SENIOR, false, None, Some(order))]);
    // P3: the missed call pops up for every manager.
    let missed = s
        .call_events
        .iter()
        .find(|e| e.r#type == "hangup")
        .expect("hangup event");
    for user in [ANNA, BORIS, SENIOR] {
        assert!(missed.user_ids.contains(&user), "{missed:?}");
    }
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_4b_missed_new_client() {
    let h = Harness::start().await;
    play(&h, &fixture("iax2/inbound_missed")).await;
    let s = h.crm.state();
    assert_eq!((s.customers.len(), s.orders.len()), (1, 1));
    assert_eq!(s.customers[0].manager_id, Some(SENIOR));
    assert_eq!(s.orders[0].manager_id, Some(SENIOR));
    assert_eq!(tasks(&s), vec![(SENIOR, false, None, Some(s.orders[0].id))]);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_5a_outbound_answered_by_responsible_manager() {
    let h = Harness::start().await;
    let (customer, _) = seed(&h, "+7 903 111-22-33", ANNA, "new");
    play(&h, &fixture("iax2/outbound_answered")).await;
    let s = h.crm.state();
    assert_eq!(tasks(&s), vec![(ANNA, true, Some(customer), None)]);
    assert_eq!(s.calls.len(), 1);
    assert_eq!(s.calls[0].r#type, "out");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_5b_outbound_answered_by_other_manager() {
    let h = Harness::start().await;
    let (customer, _) = seed(&h, "89031112233", BORIS, "new");
    play(&h, &fixture("iax2/outbound_answered")).await;
    let s = h.crm.state();
    assert_eq!(
        tasks(&s),
        vec![
            (ANNA, true, Some(customer), None),
            (BORIS, false, Some(customer), None)
        ]
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_5c_outbound_to_unknown_number() {
    let h = Harness::start().await;
    play(&h, &fixture("iax2/outbound_answered")).await;
    let s = h.crm.state();
    assert!(s.customers.is_empty() && s.orders.is_empty() && s.tasks.is_empty());
    assert_eq!(s.calls.len(), 1, "the call is still in the history");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_6a_voicemail_new_number() {
    let h = Harness::start().await;
    play(&h, &fixture("iax2/inbound_voicemail")).await;
    let s = h.crm.state();
    assert_eq!((s.customers.len(), s.orders.len()), (1, 1));
    assert_eq!(s.customers[0].manager_id, Some(SENIOR));
    assert_eq!(tasks(&s), vec![(SENIOR, false, None, Some(s.orders[0].id))]);
    assert!(s.tasks[0].text.contains("Call the client back"));
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_6b_voicemail_existing_client_with_order() {
    let h = Harness::start().await;
    let (_, order) = seed(&h, "+79167778800", BORIS, "new");
    play(&h, &fixture("iax2/inbound_voicemail")).await;
    let s = h.crm.state();
    assert_eq!((s.customers.len(), s.orders.len()), (1, 1));
    assert_eq!(tasks(&s), vec![(BORIS, false, None, Some(order))]);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_7_create_on_ring_makes_customer_and_order_for_the_senior() {
    let h = Harness::start_custom(common::crm_options(), |t| {
        format!("{t}\n[matrix]\ncreate_on = \"ring\"\n")
    })
    .await;
    play(&h, &fixture("iax2/inbound_answered")).await;
    let s = h.crm.state();
    assert_eq!((s.customers.len(), s.orders.len()), (1, 1));
    assert_eq!(s.customers[0].manager_id, Some(SENIOR));
    assert_eq!(s.orders[0].manager_id, Some(SENIOR));
    // Made while it rang: before the first answer-time request reached the CRM.
    let created = s
        .requests
        .iter()
        .position(|r| r.path == "/api/v5/customers/create")
        .expect("customer created");
    let closed = s
        .requests
        .iter()
        .position(|r| r.path == "/api/v5/telephony/calls/upload")
        .expect("history");
    assert!(created < closed);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn module_code_registers_the_telephony_module_with_the_extensions() {
    let h = Harness::start_custom(common::crm_options(), |t| {
        t.replace(
            "timeout = \"2s\"",
            "timeout = \"2s\"\nmodule_code = \"callbridge\"",
        )
    })
    .await;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    let module = loop {
        if let Some(m) = h.crm.state().integration_modules.first().cloned() {
            break m;
        }
        assert!(tokio::time::Instant::now() < deadline, "module registered");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert_eq!(module["code"], "callbridge");
    let telephony = &module["integrations"]["telephony"];
    for flag in [
        "inputEventSupported",
        "outputEventSupported",
        "hangupEventSupported",
    ] {
        assert_eq!(telephony[flag], true, "{flag}");
    }
    let mut codes: Vec<(String, u64)> = telephony["additionalCodes"]
        .as_array()
        .expect("codes")
        .iter()
        .map(|c| {
            (
                c["code"].as_str().unwrap_or_default().to_string(),
                c["userId"].as_u64().unwrap_or_default(),
            )
        })
        .collect();
    codes.sort();
    assert_eq!(
        codes,
        vec![("101".to_string(), ANNA), ("102".to_string(), BORIS)]
    );
    h.stop().await;
}

/// Two missed calls from one new number, the second while the CRM is still making the
/// first one's customer: one customer and one order; the second call is an existing
/// client's (row 4a after 4b), not a second new one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_calls_from_one_new_number_make_one_customer_and_one_order() {
    let mut crm = common::crm_options();
    crm.latency = Some(std::time::Duration::from_millis(150));
    let h = Harness::start_custom(crm, |t| t).await;
    let first = fixture("iax2/inbound_missed").replica(1);
    let second = fixture("iax2/inbound_missed").replica(2);
    tokio::join!(h.pbx.play(&first, 20.0), async {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        h.pbx.play(&second, 20.0).await
    });
    h.wait_outbox_settled().await;
    let s = h.crm.state();
    assert_eq!(s.customers.len(), 1, "{:#?}", s.customers);
    assert_eq!(s.orders.len(), 1, "{:#?}", s.orders);
    let order = s.orders[0].id;
    assert_eq!(
        tasks(&s),
        vec![
            (SENIOR, false, None, Some(order)),
            (SENIOR, false, None, Some(order))
        ],
        "a task for each missed call, both on the one order"
    );
    assert_eq!(s.calls.len(), 2);
    h.stop().await;
}
