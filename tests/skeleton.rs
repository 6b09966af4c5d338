//! The walking skeleton end to end over real loopback sockets: recorded Asterisk bytes
//! from an AMI peer → the daemon → a retailCRM API v5 stand-in over HTTP.

mod common;

use std::time::Duration;

use callbridge::tools::sim::ami::AmiSim;
use callbridge::tools::sim::retailcrm::Fault;
use common::{ami_options, fixture, Harness};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answered_call_gives_one_popup_and_one_answered_history_entry() {
    let h = Harness::start().await;
    h.play("iax2/inbound_answered").await;
    let state = h
        .wait_crm("the call in the history", |s| !s.calls.is_empty())
        .await;
    h.wait_outbox_settled().await;
    let state = {
        let _ = state;
        h.crm.state()
    };

    let popups: Vec<_> = state
        .call_events
        .iter()
        .filter(|e| e.r#type == "in")
        .collect();
    assert_eq!(popups.len(), 1, "one pop-up: {:?}", state.call_events);
    assert_eq!(popups[0].codes, vec!["101".to_string()]);
    assert_eq!(popups[0].phone, "+79161234567");
    assert_eq!(popups[0].external_phone.as_deref(), Some("74951234567"));

    assert_eq!(state.calls.len(), 1);
    let call = &state.calls[0];
    assert_eq!(call.r#type, "in");
    assert_eq!(call.result.as_deref(), Some("answered"));
    assert_eq!(call.duration, Some(6), "talked 6 s");
    assert_eq!(call.duration_waiting, Some(3), "rang 3 s");
    assert_eq!(call.code.as_deref(), Some("101"));
    assert_eq!(call.phone, "+79161234567");
    assert_eq!(call.external_id.as_deref(), Some("cb-office-1795627488.2"));
    // The pop-up and the history entry belong to the same call.
    assert_eq!(popups[0].call_external_id, call.external_id);

    // The store has the call and a confirmed request for every action.
    let calls = h.running.store.calls().await.expect("calls");
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].outcome.as_deref(), Some("answered"));
    assert_eq!(calls[0].employee.as_deref(), Some("101"));
    let requests = h.running.store.crm_requests().await.expect("requests");
    assert!(
        requests.iter().all(|r| r.3),
        "all requests confirmed: {requests:?}"
    );
    // Three moments decided (ringing, answer, end); a new client answered by a mapped
    // manager (row 1): customer and order at answer; the pop-up, its closing, history.
    let mut kinds: Vec<&str> = requests.iter().map(|r| r.1.as_str()).collect();
    kinds.sort_unstable();
    assert_eq!(
        kinds,
        vec![
            "call_history",
            "customer",
            "decide",
            "decide",
            "decide",
            "order",
            "popup_hangup",
            "popup_in"
        ],
        "{requests:?}"
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missed_call_is_uploaded_as_no_answer() {
    let h = Harness::start().await;
    h.play("iax2/inbound_missed").await;
    let state = h
        .wait_crm("the missed call in the history", |s| !s.calls.is_empty())
        .await;
    let call = &state.calls[0];
    assert_eq!(call.result.as_deref(), Some("no answer"));
    assert_eq!(call.phone, "+79035556677");
    assert_eq!(call.duration, Some(0));
    assert_eq!(call.code.as_deref(), Some("101"), "the extension that rang");
    let popups: Vec<_> = state
        .call_events
        .iter()
        .filter(|e| e.r#type == "in")
        .collect();
    assert_eq!(popups.len(), 1);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnects_after_the_pbx_restarts_and_delivers_the_next_call() {
    let h = Harness::start().await;
    let addr = h.pbx.addr();
    h.pbx.stop();
    // The daemon notices the closed connection and retries with backoff.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let health = reqwest::get(format!("http://{}/health", h.running.http_addr))
        .await
        .expect("health");
    assert_eq!(health.status().as_u16(), 503, "PBX down → 503");

    let pbx = AmiSim::start_on(addr, ami_options())
        .await
        .expect("restart on the same port");
    assert!(
        pbx.wait_for_logins(1, Duration::from_secs(10)).await,
        "the daemon logged in again"
    );
    pbx.play(&fixture("iax2/inbound_answered"), 20.0).await;
    let state = h
        .wait_crm("the call after the reconnect", |s| !s.calls.is_empty())
        .await;
    assert_eq!(state.calls[0].result.as_deref(), Some("answered"));

    let health = reqwest::get(format!("http://{}/health", h.running.http_addr))
        .await
        .expect("health");
    assert_eq!(health.status().as_u16(), 200);
    let body: serde_json::Value = health.json().await.expect("json");
    assert_eq!(body["pbx"]["office"]["state"], "connected");
    assert_eq!(body["pbx"]["office"]["reconnects"], 1);
    pbx.stop();
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crm_refusal_is_recorded_in_the_store_not_lost() {
    let h = Harness::start().await;
    h.crm.inject(
        Fault::ApiError {
            times: 1,
            status: 400,
            error_msg: "Errors in the entity format".into(),
            errors: serde_json::json!({"phone": "This value is not valid."}),
        }
        .on_path("/api/v5/telephony/calls/upload"),
    );
    h.play("iax2/inbound_missed").await;
    h.wait_outbox_settled().await;
    let actions = h.running.store.actions().await.expect("actions");
    let history = actions
        .iter()
        .find(|a| a.kind == "call_history")
        .expect("history action stored");
    assert_eq!(history.state, "dead");
    assert_eq!(history.last_status, Some(400));
    let err = history.last_error.as_deref().unwrap_or_default();
    assert!(err.contains("Errors in the entity format"), "{err}");
    assert!(err.contains("phone: This value is not valid."), "{err}");
    let requests = h.running.store.crm_requests().await.expect("requests");
    assert!(requests
        .iter()
        .any(|r| r.1 == "call_history" && r.2 == Some(400) && !r.3));
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crm_outage_is_retried_until_delivered() {
    let h = Harness::start().await;
    h.crm
        .inject(Fault::Status503 { times: 2 }.on_path("/api/v5/telephony/calls/upload"));
    h.play("iax2/inbound_answered").await;
    let state = h
        .wait_crm("the history after two 503s", |s| !s.calls.is_empty())
        .await;
    assert_eq!(state.calls.len(), 1);
    h.wait_outbox_settled().await;
    let requests = h.running.store.crm_requests().await.expect("requests");
    let history: Vec<_> = requests.iter().filter(|r| r.1 == "call_history").collect();
    assert_eq!(history.len(), 3, "two failures then success: {history:?}");
    assert_eq!(history[0].2, Some(503));
    assert!(history[2].3);
    h.stop().await;
}
