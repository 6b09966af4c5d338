//! The AMI client against peers that misbehave the ways real networks and PBXs do:
//! events glued to the Login answer, garbage and oversized frames mid-stream, a PBX
//! that stops answering Ping. Each over a real loopback socket.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{fixture, Harness};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_and_oversized_frames_are_skipped_and_the_connection_goes_on() {
    let h = Harness::start().await;
    // A frame with a line without a colon, a frame with invalid UTF-8, and a 100 KiB
    // frame (over the 64 KiB cap), then a real call.
    h.pbx.send_raw(Bytes::from_static(
        b"Event: Newchannel\r\nthis line has no colon\r\nUniqueid: 1.1\r\n\r\n",
    ));
    h.pbx.send_raw(Bytes::from_static(
        b"Event: VarSet\r\nValue: \xff\xfe\r\n\r\n",
    ));
    let mut big = b"Event: UserEvent\r\n".to_vec();
    for i in 0..2000 {
        big.extend_from_slice(format!("Data{i}: {}\r\n", "x".repeat(48)).as_bytes());
    }
    big.extend_from_slice(b"\r\n");
    h.pbx.send_raw(Bytes::from(big));
    h.play("iax2/inbound_answered").await;
    let state = h
        .wait_crm("the call after the garbage", |s| !s.calls.is_empty())
        .await;
    assert_eq!(state.calls[0].result.as_deref(), Some("answered"));
    assert_eq!(h.pbx.logins(), 1, "no reconnect was needed");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pbx_that_stops_answering_ping_is_reconnected() {
    // ping_interval 200 ms, ping_timeout 200 ms: a silent peer is declared dead fast.
    let h = Harness::start_with(
        common::crm_options(),
        "ping_interval = \"200ms\"\nping_timeout = \"200ms\"\nreconnect_max_delay = \"1s\"",
    )
    .await;
    h.pbx.set_answer_pings(false);
    assert!(
        h.pbx.wait_for_logins(2, Duration::from_secs(10)).await,
        "the daemon gave up on the silent connection and logged in again"
    );
    h.pbx.set_answer_pings(true);
    let pings = h
        .pbx
        .actions()
        .iter()
        .filter(|a| a.get("Action") == Some("Ping"))
        .count();
    assert!(pings >= 1);
    h.play("iax2/inbound_missed").await;
    h.wait_crm("a call on the new connection", |s| !s.calls.is_empty())
        .await;
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_in_the_same_read_as_the_login_answer_are_not_lost() {
    // A raw peer: greeting, then the Login answer and a whole recorded call in one write.
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let call = fixture("iax2/inbound_missed").bytes();
    let peer = tokio::spawn(async move {
        let (mut sock, _) = listener.accept().await.expect("accept");
        sock.write_all(b"Asterisk Call Manager/11.0.0\r\n")
            .await
            .expect("greet");
        let mut seen = Vec::new();
        let mut buf = [0u8; 1024];
        while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = sock.read(&mut buf).await.expect("read login");
            assert!(n > 0, "client closed before Login");
            seen.extend_from_slice(&buf[..n]);
        }
        let login = String::from_utf8_lossy(&seen).to_string();
        let id = login
            .lines()
            .find_map(|l| l.strip_prefix("ActionID: "))
            .unwrap_or("")
            .to_string();
        let mut burst = format!(
            "Response: Success\r\nActionID: {id}\r\nMessage: Authentication accepted\r\n\r\n"
        )
        .into_bytes();
        burst.extend_from_slice(&call);
        sock.write_all(&burst).await.expect("burst");
        // Keep the connection open while the test checks the CRM.
        tokio::time::sleep(Duration::from_secs(20)).await;
        login
    });
    let crm = callbridge::tools::sim::retailcrm::RetailCrmSim::start(common::crm_options())
        .await
        .expect("crm");
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = callbridge::config::from_toml_str(&common::config_toml(
        port,
        &crm.base_url(),
        &dir.path().join("cb.db"),
        "",
    ))
    .expect("config");
    let stop = tokio_util::sync::CancellationToken::new();
    let daemon = tokio::spawn(callbridge::daemon::run(cfg, stop.clone(), None));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while crm.state().calls.is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "call delivered: {:#?}",
            crm.state()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(crm.state().calls[0].result.as_deref(), Some("no answer"));
    stop.cancel();
    daemon.await.expect("join").expect("clean stop");
    peer.abort();
    crm.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_sends_username_events_and_an_action_id() {
    let h = Harness::start().await;
    let login = h
        .pbx
        .actions()
        .into_iter()
        .find(|a| a.get("Action") == Some("Login"))
        .expect("a Login action");
    assert_eq!(login.get("Username"), Some("callbridge"));
    assert!(login.action_id().is_some_and(|id| !id.is_empty()));
    assert_eq!(login.get("Events"), Some("call,dialplan,agent,system"));
    h.stop().await;
}
