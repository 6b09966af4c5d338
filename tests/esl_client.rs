//! The event socket client against a FreeSWITCH that misbehaves the ways real networks
//! and PBXs do, and restarts on either side, each over a real loopback socket: garbage,
//! oversized and malformed events mid-stream, a server that closes mid-event, the
//! disconnect notice, a wrong password, the connection dropping mid-call, a call ending
//! while nobody listens, FreeSWITCH restarting, and the daemon killed mid-call. No call
//! lost, none reported twice, and the next call always tracked.

mod common;

use std::time::Duration;

use bytes::Bytes;
use callbridge::daemon::{self, Running};
use callbridge::tools::sim::esl::{EslSim, EslSimOptions, DISCONNECT_NOTICE};
use callbridge::tools::sim::retailcrm::{RetailCrmSim, SimState};
use common::{crm_options, esl_fixture, DaemonProcess, CRM_KEY, ESL_PASSWORD};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// A configuration with one FreeSWITCH `[[pbx]]`.
fn config(esl_port: u16, crm: &RetailCrmSim, dir: &std::path::Path, extra_pbx: &str) -> String {
    common::freeswitch_config(esl_port, &crm.base_url(), &dir.join("cb.db"), extra_pbx)
}

fn popups(state: &SimState) -> usize {
    state
        .call_events
        .iter()
        .filter(|e| e.r#type == "in")
        .count()
}

struct EslHarness {
    pbx: EslSim,
    crm: RetailCrmSim,
    running: Running,
    _dir: tempfile::TempDir,
    shutdown: CancellationToken,
    daemon: JoinHandle<anyhow::Result<()>>,
}

impl EslHarness {
    async fn start(extra_pbx: &str) -> EslHarness {
        let pbx = EslSim::start(EslSimOptions {
            password: ESL_PASSWORD.into(),
        })
        .await
        .expect("ESL sim");
        let crm = RetailCrmSim::start(crm_options()).await.expect("CRM sim");
        let dir = tempfile::tempdir().expect("tempdir");
        let toml = config(pbx.addr().port(), &crm, dir.path(), extra_pbx);
        let cfg = callbridge::config::from_toml_str(&toml).expect("config");
        let shutdown = CancellationToken::new();
        let (tx, rx) = oneshot::channel();
        let daemon = tokio::spawn(daemon::run(cfg, shutdown.clone(), Some(tx)));
        let running = rx.await.expect("daemon ready");
        assert!(
            pbx.wait_for_logins(1, Duration::from_secs(10)).await,
            "the daemon subscribes"
        );
        EslHarness {
            pbx,
            crm,
            running,
            _dir: dir,
            shutdown,
            daemon,
        }
    }

    async fn wait_crm(&self, what: &str, check: impl Fn(&SimState) -> bool) -> SimState {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        loop {
            let state = self.crm.state();
            if check(&state) {
                return state;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for: {what}\nCRM state: {state:#?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn stop(self) {
        self.shutdown.cancel();
        self.daemon
            .await
            .expect("join")
            .expect("daemon stops cleanly");
        self.pbx.stop();
        self.crm.shutdown();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribes_to_the_events_it_reads_and_asks_for_the_channel_list() {
    let h = EslHarness::start("").await;
    let commands = h.pbx.commands();
    assert_eq!(commands[0], format!("auth {ESL_PASSWORD}"));
    let subscription = commands
        .iter()
        .find(|c| c.starts_with("event plain "))
        .expect("an event plain subscription");
    for event in [
        "CHANNEL_CREATE",
        "CHANNEL_ANSWER",
        "CHANNEL_BRIDGE",
        "CHANNEL_UNBRIDGE",
        "CHANNEL_HANGUP_COMPLETE",
        "CHANNEL_DESTROY",
        "RECORD_START",
        "CUSTOM callcenter::info vm::maintenance",
    ] {
        assert!(subscription.contains(event), "{event} in {subscription}");
    }
    assert!(
        !subscription.contains("ALL") && !subscription.contains("CHANNEL_STATE"),
        "not the noise: {subscription}"
    );
    // The list is asked for right after the subscription is answered: wait for it.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !h
        .pbx
        .commands()
        .iter()
        .any(|c| c == "api show channels as json")
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "asks for the channel list: {:?}",
            h.pbx.commands()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_bytes_and_a_server_closing_mid_event_do_not_stop_the_next_call() {
    let h = EslHarness::start("reconnect_max_delay = \"1s\"").await;
    // Lines without a colon; an event body over the 1 MiB limit; an event that lacks its
    // Unique-ID; bytes that are no UTF-8.
    h.pbx.send_raw(Bytes::from_static(
        b"this is no header\nneither is this\n\n",
    ));
    let big = "x".repeat(1_200_000);
    h.pbx.send_raw(Bytes::from(format!(
        "Content-Length: {}\nContent-Type: text/event-plain\n\n{big}",
        big.len()
    )));
    let bad = "Event-Name: CHANNEL_CREATE\nChannel-Name: sofia/internal/101%40x\n\n";
    h.pbx.send_raw(Bytes::from(format!(
        "Content-Length: {}\nContent-Type: text/event-plain\n\n{bad}",
        bad.len()
    )));
    h.pbx.send_raw(Bytes::from_static(
        b"Content-Length: 20\nContent-Type: text/event-plain\n\nEvent-Name: \xff\xfe\xfd\n\n\n\n\n",
    ));
    // A call after all that on the same connection.
    h.pbx.play(&esl_fixture("inbound_answered"), 20.0).await;
    let state = h
        .wait_crm("the call after the garbage", |s| !s.calls.is_empty())
        .await;
    assert_eq!(state.calls[0].result.as_deref(), Some("answered"));
    assert_eq!(h.pbx.logins(), 1, "no reconnect was needed");

    // The server closes in the middle of an event.
    h.pbx.send_raw(Bytes::from_static(
        b"Content-Length: 900\nContent-Type: text/event-plain\n\nEvent-Name: CHANNEL_CREATE\nUnique-ID: 0000",
    ));
    h.pbx.drop_clients();
    assert!(
        h.pbx.wait_for_logins(2, Duration::from_secs(10)).await,
        "subscribed again"
    );
    h.pbx.play(&esl_fixture("inbound_missed"), 20.0).await;
    let state = h.wait_crm("the next call", |s| s.calls.len() == 2).await;
    assert_eq!(state.calls[1].result.as_deref(), Some("no answer"));
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_disconnect_notice_ends_the_session_and_the_client_comes_back() {
    let h = EslHarness::start("reconnect_max_delay = \"1s\"").await;
    h.pbx
        .send_raw(Bytes::from_static(DISCONNECT_NOTICE.as_bytes()));
    assert!(
        h.pbx.wait_for_logins(2, Duration::from_secs(10)).await,
        "subscribed again after the notice"
    );
    let link = h.running.pbx.snapshot();
    assert!(link.contains_key("office"));
    h.pbx.play(&esl_fixture("outbound_answered"), 20.0).await;
    let state = h.wait_crm("the call", |s| !s.calls.is_empty()).await;
    assert_eq!(state.calls[0].result.as_deref(), Some("answered"));
    assert_eq!(state.calls[0].r#type, "out");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_is_a_clear_error_retried_with_backoff_and_never_logged() {
    let pbx = EslSim::start(EslSimOptions {
        password: "the-pbx-wants-this".into(),
    })
    .await
    .expect("ESL sim");
    let crm = RetailCrmSim::start(crm_options()).await.expect("CRM sim");
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("callbridge.toml");
    std::fs::write(
        &path,
        config(
            pbx.addr().port(),
            &crm,
            dir.path(),
            "reconnect_max_delay = \"1s\"",
        ),
    )
    .expect("write config");
    let mut daemon = DaemonProcess::spawn(&path, "trace", true);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let auths = || {
        pbx.commands()
            .iter()
            .filter(|c| c.starts_with("auth "))
            .count()
    };
    while auths() < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "tries again after the refusal"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(pbx.logins(), 0);
    daemon.terminate();
    let logs = daemon.logs();
    assert!(
        logs.contains("password rejected by the event socket: -ERR invalid"),
        "the refusal is logged clearly: {logs}"
    );
    assert!(logs.contains("retry_in"), "with its backoff: {logs}");
    assert!(!logs.contains(ESL_PASSWORD), "ESL password in logs");
    assert!(!logs.contains(CRM_KEY), "CRM key in logs");
    pbx.stop();
    crm.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_drops_mid_call_and_the_call_goes_on() {
    let h = EslHarness::start("").await;
    let (ringing, rest) = esl_fixture("inbound_answered").split_at(Duration::from_secs(3));
    h.pbx.play(&ringing, 20.0).await;
    h.wait_crm("the pop-up", |s| popups(s) == 1).await;
    h.pbx.drop_clients();
    assert!(
        h.pbx.wait_for_logins(2, Duration::from_secs(10)).await,
        "subscribed again"
    );
    // The channel list after the reconnect finds the call still up; the rest comes.
    h.pbx.play(&rest, 20.0).await;
    h.wait_crm("the history", |s| !s.calls.is_empty()).await;
    common::wait_settled(&h.running.store, 1, Duration::from_secs(15)).await;
    let state = h.crm.state();
    assert_eq!(popups(&state), 1, "no second pop-up");
    assert_eq!(state.calls.len(), 1);
    assert_eq!(state.calls[0].result.as_deref(), Some("answered"));
    assert_eq!(state.calls[0].code.as_deref(), Some("101"));
    assert_eq!(state.calls[0].duration, Some(6));
    let calls = h.running.store.calls().await.expect("calls");
    assert!(!calls[0].reconstructed, "every event was seen");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_that_ended_while_disconnected_is_ended_as_reconstructed() {
    let h = EslHarness::start("reconnect_max_delay = \"2s\"").await;
    let (ringing, rest) = esl_fixture("inbound_answered").split_at(Duration::from_secs(5));
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
    common::wait_settled(&h.running.store, 1, Duration::from_secs(15)).await;
    let calls = h.running.store.calls().await.expect("calls");
    assert!(calls[0].reconstructed, "marked as reconstructed");
    assert_eq!(calls[0].employee.as_deref(), Some("101"));
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn freeswitch_restart_ends_old_calls_and_takes_new_ones() {
    let h = EslHarness::start("reconnect_max_delay = \"1s\"").await;
    let (ringing, _) = esl_fixture("inbound_missed").split_at(Duration::from_secs(2));
    h.pbx.play(&ringing, 20.0).await;
    h.wait_crm("the pop-up", |s| popups(s) == 1).await;
    let addr = h.pbx.addr();
    h.pbx.stop();
    tokio::time::sleep(Duration::from_millis(200)).await;
    // A fresh FreeSWITCH on the same port: a new core uuid, no channels.
    let pbx = EslSim::start_on(
        addr,
        EslSimOptions {
            password: ESL_PASSWORD.into(),
        },
    )
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
    pbx.play(&esl_fixture("inbound_answered"), 20.0).await;
    let state = h.wait_crm("the next call", |s| s.calls.len() == 2).await;
    assert_eq!(state.calls[1].result.as_deref(), Some("answered"));
    pbx.stop();
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemon_killed_mid_call_resumes_it_after_restart() {
    let pbx = EslSim::start(EslSimOptions {
        password: ESL_PASSWORD.into(),
    })
    .await
    .expect("ESL sim");
    let crm = RetailCrmSim::start(crm_options()).await.expect("CRM sim");
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("callbridge.toml");
    std::fs::write(&path, config(pbx.addr().port(), &crm, dir.path(), "")).expect("config");
    let log = std::env::var("CALLBRIDGE_TEST_LOG").unwrap_or_else(|_| "warn".into());
    let daemon = DaemonProcess::spawn(&path, &log, false);
    assert!(pbx.wait_for_logins(1, Duration::from_secs(20)).await);
    // Both phones of the ring group ring; then the daemon dies.
    let (ringing, rest) = esl_fixture("ring_group_second_answers").split_at(Duration::from_secs(1));
    pbx.play(&ringing, 20.0).await;
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
    let daemon = DaemonProcess::spawn(&path, &log, false);
    assert!(
        pbx.wait_for_logins(2, Duration::from_secs(20)).await,
        "the new daemon subscribed"
    );
    // Its channel list is in before the rest of the call comes.
    tokio::time::sleep(Duration::from_millis(300)).await;
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
    assert_eq!(popups(&state), 2, "the two pop-ups were not sent again");
    assert_eq!(state.calls.len(), 1, "one history entry");
    assert_eq!(state.calls[0].result.as_deref(), Some("answered"));
    assert_eq!(
        state.calls[0].code.as_deref(),
        Some("102"),
        "102 answered after the restart"
    );
    drop(daemon);
    pbx.stop();
    crm.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_daemon_follows_an_asterisk_and_a_freeswitch_at_once() {
    let ami = callbridge::tools::sim::ami::AmiSim::start(common::ami_options())
        .await
        .expect("AMI sim");
    let fs = EslSim::start(EslSimOptions {
        password: ESL_PASSWORD.into(),
    })
    .await
    .expect("ESL sim");
    let crm = RetailCrmSim::start(crm_options()).await.expect("CRM sim");
    let dir = tempfile::tempdir().expect("tempdir");
    let branch = format!(
        "[[pbx]]\nname = \"branch\"\nkind = \"freeswitch\"\nhost = \"127.0.0.1\"\nport = {}\nsecret = \"{ESL_PASSWORD}\"\n",
        fs.addr().port()
    );
    let toml = common::config_toml(
        ami.addr().port(),
        &crm.base_url(),
        &dir.path().join("cb.db"),
        &branch,
    );
    let cfg = callbridge::config::from_toml_str(&toml).expect("config");
    let shutdown = CancellationToken::new();
    let (tx, rx) = oneshot::channel();
    let daemon = tokio::spawn(daemon::run(cfg, shutdown.clone(), Some(tx)));
    let running = rx.await.expect("daemon ready");
    assert!(ami.wait_for_logins(1, Duration::from_secs(10)).await);
    assert!(fs.wait_for_logins(1, Duration::from_secs(10)).await);
    // A call on each PBX at the same time.
    let (on_asterisk, on_freeswitch) = (
        common::fixture("iax2/inbound_answered"),
        esl_fixture("queue_agent_answers"),
    );
    tokio::join!(ami.play(&on_asterisk, 20.0), fs.play(&on_freeswitch, 20.0));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while crm.state().calls.len() < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "both calls in the history: {:#?}",
            crm.state().calls
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let state = crm.state();
    assert_eq!(state.calls.len(), 2, "{:#?}", state.calls);
    let on = |prefix: &str| {
        state
            .calls
            .iter()
            .find(|c| {
                c.external_id
                    .as_deref()
                    .is_some_and(|id| id.starts_with(prefix))
            })
            .unwrap_or_else(|| panic!("a call from {prefix}: {:#?}", state.calls))
    };
    let office = on("cb-office-");
    assert_eq!(office.phone, "+79161234567");
    assert_eq!(office.result.as_deref(), Some("answered"));
    let branch = on("cb-branch-");
    assert_eq!(branch.phone, "+79857778899");
    assert_eq!(branch.result.as_deref(), Some("answered"));
    assert_eq!(branch.code.as_deref(), Some("101"));
    assert!(branch.record_url.is_some(), "the queue call was recorded");
    let links = running.pbx.snapshot();
    assert!(links.contains_key("office") && links.contains_key("branch"));
    shutdown.cancel();
    daemon.await.expect("join").expect("daemon stops cleanly");
    ami.stop();
    fs.stop();
    crm.shutdown();
}
