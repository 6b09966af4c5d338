//! Calls that reached the CRM wrong when replayed through the built binary (issue 16),
//! played again byte for byte through `callbridge run` over real sockets: calls placed
//! by an originate (Asterisk `Originate` of a Local channel, FreeSWITCH `originate
//! user/101 &bridge(…)`), calls through FreeSWITCH loopback channels, and a FreeSWITCH
//! call whose channel list is read while it talks. Each gives one call, with the right
//! direction, outcome, employee and talk time, in the store and in retailCRM's history.

mod common;

use std::time::Duration;

use callbridge::store::{CallRow, Store};
use callbridge::tools::sim::ami::AmiSim;
use callbridge::tools::sim::esl::{EslSim, EslSimOptions};
use callbridge::tools::sim::retailcrm::SimState;
use common::{esl_fixture, fixture, DaemonProcess, ESL_PASSWORD};

enum Pbx {
    Asterisk,
    FreeSwitch,
}

/// What the call must end as: in the store, and in the history upload.
struct Expect {
    direction: &'static str,
    outcome: &'static str,
    employee: &'static str,
    talk_secs: i64,
    /// The history record: `type`, `result`, the customer's `phone`.
    history: (&'static str, &'static str, &'static str),
    /// The extensions of the inbound pop-ups, in order.
    popups: &'static [&'static str],
}

/// Plays `name` through the real binary (its `[[pbx]]` with `extra_pbx` keys) at
/// `speed` and checks the one call it must give.
async fn shape(pbx: Pbx, name: &str, speed: f64, extra_pbx: &str, want: Expect) {
    let crm = common::unlimited_crm().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("cb.db");
    let ami = AmiSim::start(common::ami_options()).await.expect("AMI sim");
    let esl = EslSim::start(EslSimOptions {
        password: ESL_PASSWORD.into(),
    })
    .await
    .expect("ESL sim");
    let toml = match pbx {
        Pbx::Asterisk => common::config_toml(ami.addr().port(), &crm.base_url(), &db, extra_pbx),
        Pbx::FreeSwitch => {
            common::freeswitch_config(esl.addr().port(), &crm.base_url(), &db, extra_pbx)
        }
    };
    let config = dir.path().join("callbridge.toml");
    std::fs::write(&config, toml).expect("config");
    let log = std::env::var("CALLBRIDGE_TEST_LOG").unwrap_or_else(|_| "error".into());
    let mut daemon = DaemonProcess::spawn(&config, &log, false);
    match pbx {
        Pbx::Asterisk => {
            assert!(
                ami.wait_for_logins(1, Duration::from_secs(20)).await,
                "logged in"
            );
            ami.play(&fixture(name), speed).await;
        }
        Pbx::FreeSwitch => {
            assert!(
                esl.wait_for_logins(1, Duration::from_secs(20)).await,
                "logged in"
            );
            esl.play(&esl_fixture(name), speed).await;
        }
    }
    let store = Store::open(&format!("sqlite://{}", db.display()))
        .await
        .expect("store");
    common::wait_settled(&store, 1, Duration::from_secs(30)).await;
    let calls = store.calls().await.expect("calls");
    let state = crm.state();
    daemon.terminate();
    daemon.wait_exit(Duration::from_secs(10), "the daemon stops on SIGTERM");
    ami.stop();
    esl.stop();
    crm.shutdown();
    check(name, &calls, &state, &want);
}

fn check(name: &str, calls: &[CallRow], state: &SimState, want: &Expect) {
    assert_eq!(calls.len(), 1, "{name}: one call: {calls:#?}");
    let call = &calls[0];
    assert_eq!(call.direction, want.direction, "{name}: direction");
    assert_eq!(
        call.outcome.as_deref(),
        Some(want.outcome),
        "{name}: outcome"
    );
    assert_eq!(
        call.employee.as_deref(),
        Some(want.employee),
        "{name}: employee"
    );
    assert_eq!(call.talk_secs, Some(want.talk_secs), "{name}: talk time");
    assert!(!call.reconstructed, "{name}: every event was seen");
    assert_eq!(
        state.calls.len(),
        1,
        "{name}: one history record: {:#?}",
        state.calls
    );
    let up = &state.calls[0];
    let (kind, result, phone) = want.history;
    assert_eq!(up.r#type, kind, "{name}: history type");
    assert_eq!(up.result.as_deref(), Some(result), "{name}: history result");
    assert_eq!(up.phone, phone, "{name}: history phone");
    assert_eq!(
        up.code.as_deref(),
        Some(want.employee),
        "{name}: history manager"
    );
    assert_eq!(
        up.duration,
        Some(want.talk_secs as u64),
        "{name}: history talk time"
    );
    // Every pop-up is about this one call.
    assert!(
        state
            .call_events
            .iter()
            .all(|e| e.call_external_id == up.external_id),
        "{name}: pop-ups of one call: {:#?}",
        state.call_events
    );
    let popups: Vec<&str> = state
        .call_events
        .iter()
        .filter(|e| e.r#type == "in")
        .flat_map(|e| e.codes.iter().map(String::as_str))
        .collect();
    assert_eq!(popups, want.popups, "{name}: pop-ups");
}

macro_rules! shapes {
    ($(
        $(#[doc = $doc:literal])*
        $test:ident: $pbx:ident $fixture:literal at $speed:literal $extra:literal =>
            $direction:literal $outcome:literal by $employee:literal talking $talk:literal,
            history $kind:literal $result:literal $phone:literal, pop-ups $popups:expr;
    )*) => {
        $(
            $(#[doc = $doc])*
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $test() {
                shape(Pbx::$pbx, $fixture, $speed, $extra, Expect {
                    direction: $direction,
                    outcome: $outcome,
                    employee: $employee,
                    talk_secs: $talk,
                    history: ($kind, $result, $phone),
                    popups: $popups,
                })
                .await;
            }
        )*
    };
}

shapes! {
    /// Asterisk `Originate` of `Local/89031112233@internal` with the extension's caller
    /// id (a click-to-call tool): the first channel has no caller id and sits on the
    /// outside number; `101` comes in `NewCallerid`, and the `;2` half dials the trunk.
    /// It was an inbound missed call "from 101".
    an_asterisk_originate_of_a_local_channel_is_an_outbound_call_by_the_extension:
        Asterisk "local/outbound_answered" at 20.0 "" =>
        "outbound" "answered" by "101" talking 6,
        history "out" "answered" "+79031112233", pop-ups &[];

    /// FreeSWITCH `originate {origination_caller_id_number=…}user/101
    /// &bridge(sofia/gateway/carrier/89031112233)`: the employee's phone is rung first
    /// (an outbound leg whose destination is `101`), then the gateway leg. It reached
    /// the CRM with no history at all (its customer was "101").
    a_freeswitch_originate_of_the_extension_then_the_number_is_an_outbound_call:
        FreeSwitch "synthetic/originate_user_bridge_answered" at 20.0 "" =>
        "outbound" "answered" by "101" talking 6,
        history "out" "answered" "+79031112233", pop-ups &[];

    a_freeswitch_originate_the_number_does_not_answer_is_an_outbound_call_not_answered:
        FreeSwitch "synthetic/originate_user_bridge_no_answer" at 40.0 "" =>
        "outbound" "missed" by "101" talking 0,
        history "out" "no answer" "+79031112233", pop-ups &[];

    /// Click-to-call the other common way: `Originate` of `Local/101@internal` rings the
    /// employee first (no pop-up for their own phone), then the `;1` half dials the
    /// customer (written in the recordings' shape: synthetic/README.md).
    an_asterisk_originate_ringing_the_extension_first_is_its_outbound_call:
        Asterisk "synthetic/local_originate_extension_first" at 20.0 "" =>
        "outbound" "answered" by "101" talking 6,
        history "out" "answered" "+79031112233", pop-ups &[];

    an_asterisk_originate_the_number_does_not_answer_is_an_outbound_call_not_answered:
        Asterisk "synthetic/local_outbound_no_answer" at 20.0 "" =>
        "outbound" "missed" by "101" talking 0,
        history "out" "no answer" "+74957654321", pop-ups &[];

    /// A queue whose agents are reached through `loopback/10X/phones` (written in the
    /// recordings' shape: synthetic/README.md).
    a_freeswitch_queue_through_loopback_agents_is_one_call:
        FreeSwitch "synthetic/loopback_queue_agent_answers" at 20.0 "" =>
        "inbound" "answered" by "101" talking 5,
        history "in" "answered" "+79857778899", pop-ups &["102", "101"];

    /// A carrier call through `loopback/…` channels (the trunk leg and the phone each a
    /// pair of halves joined only by `other_loopback_leg_uuid`): one call, not two.
    a_freeswitch_loopback_inbound_call_is_one_call:
        FreeSwitch "loopback/inbound_answered" at 20.0 "" =>
        "inbound" "answered" by "101" talking 6,
        history "in" "answered" "+79161234567", pop-ups &["101"];

    /// `originate loopback/101/…` dialing out through another loopback pair: one
    /// outbound call by 101 (its second half was an "outbound call from 101 to 101").
    a_freeswitch_loopback_outbound_call_is_one_call:
        FreeSwitch "loopback/outbound_answered" at 20.0 "" =>
        "outbound" "answered" by "101" talking 6,
        history "out" "answered" "+79031112233", pop-ups &[];

    /// The channel list read while the call talks — the 3-s follow-up list and a 1-s
    /// `resync_interval` — keeps the 6 s of talk (FreeSWITCH's list has no bridge
    /// column; it used to undo the bridge and leave 0 s).
    a_freeswitch_call_keeps_its_talk_time_through_channel_lists_read_while_it_talks:
        FreeSwitch "inbound_answered" at 1.5 "resync_interval = \"1s\"" =>
        "inbound" "answered" by "101" talking 6,
        history "in" "answered" "+79161234567", pop-ups &["101"];

    /// The same on Asterisk (its list shows bridges, and says what the events said).
    an_asterisk_call_keeps_its_talk_time_through_channel_lists_read_while_it_talks:
        Asterisk "iax2/inbound_answered" at 1.5 "resync_interval = \"1s\"" =>
        "inbound" "answered" by "101" talking 6,
        history "in" "answered" "+79161234567", pop-ups &["101"];
}
