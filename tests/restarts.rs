//! Restarts on either side, over real sockets: the AMI connection drops mid-call, the
//! daemon is killed with SIGKILL mid-call, Asterisk restarts. No call lost, none
//! reported twice.

mod common;

use std::time::Duration;

use callbridge::tools::sim::ami::AmiSim;
use callbridge::tools::sim::retailcrm::{RetailCrmSim, SimState};
use common::{ami_options, crm_options, fixture, write_config, DaemonProcess, Harness};

fn log_level() -> String {
    std::env::var("CALLBRIDGE_TEST_LOG").unwrap_or_else(|_| "warn".into())
}

fn popups(state: &SimState) -> usize {
    state
        .call_events
        .iter()
        .filter(|e| e.r#type == "in")
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_drops_mid_call_and_the_call_goes_on() {
    let h = Harness::start().await;
    let (ringing, rest) = fixture("iax2/inbound_answered").split_at(Duration::from_secs(5));
    h.pbx.play(&ringing, 20.0).await;
    h.wait_crm("the pop-up", |s| popups(s) == 1).await;
    h.pbx.drop_clients();
    assert!(
        h.pbx.wait_for_logins(2, Duration::from_secs(10)).await,
        "logged in again"
    );
    // The resync after the reconnect finds the call still up, and the rest of it comes.
    h.pbx.play(&rest, 20.0).await;
    h.wait_crm("the history", |s| !s.calls.is_empty()).await;
    h.wait_outbox_settled().await;
    let state = h.crm.state();
    assert_eq!(popups(&state), 1, "no second pop-up");
    assert_eq!(state.calls.len(), 1);
    assert_eq!(state.calls[0].result.as_deref(), Some("answered"));
    assert_eq!(state.calls[0].duration, Some(6));
    let calls = h.running.store.calls().await.expect("calls");
    assert!(!calls[0].reconstructed, "every event was seen");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_that_ended_while_disconnected_is_ended_as_reconstructed() {
    let h = Harness::start_with(crm_options(), "reconnect_max_delay = \"2s\"").await;
    let (ringing, rest) = fixture("iax2/inbound_answered").split_at(Duration::from_secs(5));
    h.pbx.play(&ringing, 20.0).await;
    h.wait_crm("the pop-up", |s| popups(s) == 1).await;
    // The link breaks; the call ends on the PBX while nobody listens.
    h.pbx.drop_clients();
    h.pbx.play(&rest, 20.0).await;
    assert_eq!(h.pbx.live_channels(), 0);
    assert!(h.pbx.wait_for_logins(2, Duration::from_secs(10)).await);
    let state = h
        .wait_crm("the reconstructed call in the history", |s| {
            !s.calls.is_empty()
        })
        .await;
    assert_eq!(state.calls.len(), 1);
    assert_eq!(
        state.calls[0].result.as_deref(),
        Some("answered"),
        "last known state: answered"
    );
    assert_eq!(popups(&state), 1);
    h.wait_outbox_settled().await;
    let calls = h.running.store.calls().await.expect("calls");
    assert!(
        calls[0].reconstructed,
        "marked as reconstructed in the store"
    );
    assert_eq!(calls[0].employee.as_deref(), Some("101"));
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn asterisk_restart_ends_old_calls_and_takes_new_ones() {
    let h = Harness::start_with(crm_options(), "reconnect_max_delay = \"1s\"").await;
    let (ringing, _) = fixture("iax2/inbound_missed").split_at(Duration::from_secs(3));
    h.pbx.play(&ringing, 20.0).await;
    h.wait_crm("the pop-up", |s| popups(s) == 1).await;
    let addr = h.pbx.addr();
    h.pbx.stop();
    tokio::time::sleep(Duration::from_millis(200)).await;
    // A fresh Asterisk on the same port: new startup time, no channels.
    let pbx = AmiSim::start_on(addr, ami_options())
        .await
        .expect("restart");
    assert!(pbx.wait_for_logins(1, Duration::from_secs(10)).await);
    let state = h
        .wait_crm("the vanished call ended", |s| !s.calls.is_empty())
        .await;
    assert_eq!(
        state.calls[0].result.as_deref(),
        Some("no answer"),
        "it was ringing: missed"
    );
    // A call on the restarted PBX is followed as usual.
    pbx.play(&fixture("iax2/inbound_answered"), 20.0).await;
    let state = h.wait_crm("the next call", |s| s.calls.len() == 2).await;
    assert_eq!(state.calls[1].result.as_deref(), Some("answered"));
    pbx.stop();
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemon_killed_mid_call_resumes_it_after_restart() {
    let pbx = AmiSim::start(ami_options()).await.expect("AMI sim");
    let crm = RetailCrmSim::start(crm_options()).await.expect("CRM sim");
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write_config(dir.path(), &pbx, &crm);
    let daemon = DaemonProcess::spawn(&path, &log_level(), false);
    assert!(pbx.wait_for_logins(1, Duration::from_secs(20)).await);
    let (ringing, rest) =
        fixture("iax2/ring_group_second_answers").split_at(Duration::from_secs(4));
    pbx.play(&ringing, 20.0).await;
    // Both pop-ups shown and their delivery recorded (a pop-up killed between the CRM's
    // answer and the record is in doubt and shown again while its call rings: the
    // window docs/delivery.md names; this test is about what was recorded).
    let store =
        callbridge::store::Store::open(&format!("sqlite://{}", dir.path().join("cb.db").display()))
            .await
            .expect("store");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let recorded = store
            .actions()
            .await
            .expect("actions")
            .iter()
            .filter(|a| a.kind == "popup_in" && a.state == "done")
            .count();
        if popups(&crm.state()) >= 2 && recorded >= 2 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "both pop-ups before the kill"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    store.close().await;
    // SIGKILL: no shutdown, no flush.
    drop(daemon);
    let daemon = DaemonProcess::spawn(&path, &log_level(), false);
    assert!(
        pbx.wait_for_logins(2, Duration::from_secs(20)).await,
        "the new daemon logged in"
    );
    pbx.play(&rest, 20.0).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while crm.state().calls.is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "history after the restart"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let state = crm.state();
    assert_eq!(
        popups(&state),
        2,
        "the two ringing pop-ups were not sent again"
    );
    assert_eq!(state.calls.len(), 1, "one history entry");
    let call = &state.calls[0];
    assert_eq!(call.result.as_deref(), Some("answered"));
    assert_eq!(
        call.code.as_deref(),
        Some("102"),
        "102 answered after the restart"
    );
    drop(daemon);
    pbx.stop();
    crm.shutdown();
}
