//! Every call shape the tracker knows, played from an AMI transcript (recorded from a
//! real Asterisk 22, or written in its exact shape for what the recordings lack) through
//! the real daemon over a real socket: direction, outcome, answerer, talk time and
//! recording in the store, and what the history upload to retailCRM says.

mod common;

use std::time::{Duration, SystemTime};

use callbridge::store::CallRow;
use common::Harness;

struct Expect {
    direction: &'static str,
    outcome: &'static str,
    employee: Option<&'static str>,
    /// (extension, talk seconds) in the order they talked.
    talkers: &'static [(&'static str, u32)],
    rang: &'static [&'static str],
    /// The history upload: result, code, duration; None when no upload is expected.
    history: Option<(&'static str, Option<&'static str>, u64)>,
    /// Pop-ups of type `in`.
    popups: usize,
}

async fn play_and_check(
    fixture: &str,
    extra_pbx: &str,
    expect: Expect,
) -> (
    CallRow,
    Option<callbridge::tools::sim::retailcrm::UploadedCall>,
) {
    let h = Harness::start_with(common::crm_options(), extra_pbx).await;
    h.play(fixture).await;
    h.wait_outbox_settled().await;
    let calls = h.running.store.calls().await.expect("calls");
    assert_eq!(calls.len(), 1, "{fixture}: one call: {calls:#?}");
    let call = calls[0].clone();
    assert_eq!(call.direction, expect.direction, "{fixture} direction");
    assert_eq!(
        call.outcome.as_deref(),
        Some(expect.outcome),
        "{fixture} outcome"
    );
    assert_eq!(
        call.employee.as_deref(),
        expect.employee,
        "{fixture} answerer"
    );
    let talkers: Vec<(String, u32)> =
        serde_json::from_str::<Vec<serde_json::Value>>(call.talkers.as_deref().unwrap_or("[]"))
            .expect("talkers json")
            .iter()
            .map(|t| {
                (
                    t["extension"].as_str().unwrap_or("").to_string(),
                    t["talk_secs"].as_u64().unwrap_or(0) as u32,
                )
            })
            .collect();
    let want: Vec<(String, u32)> = expect
        .talkers
        .iter()
        .map(|(e, s)| (e.to_string(), *s))
        .collect();
    assert_eq!(talkers, want, "{fixture} talkers");
    let rang: Vec<String> = serde_json::from_str(&call.rang).expect("rang json");
    assert_eq!(rang, expect.rang, "{fixture} rang");
    assert!(!call.reconstructed);

    let state = h.crm.state();
    let popups = state
        .call_events
        .iter()
        .filter(|e| e.r#type == "in")
        .count();
    assert_eq!(
        popups, expect.popups,
        "{fixture} pop-ups: {:?}",
        state.call_events
    );
    let upload = match expect.history {
        None => {
            assert!(
                state.calls.is_empty(),
                "{fixture}: no history upload: {:?}",
                state.calls
            );
            None
        }
        Some((result, code, duration)) => {
            assert_eq!(state.calls.len(), 1, "{fixture}: one history upload");
            let up = state.calls[0].clone();
            assert_eq!(up.result.as_deref(), Some(result), "{fixture} result");
            assert_eq!(up.code.as_deref(), code, "{fixture} code");
            assert_eq!(up.duration, Some(duration), "{fixture} duration");
            assert_eq!(
                up.r#type,
                if expect.direction == "outbound" {
                    "out"
                } else {
                    "in"
                }
            );
            Some(up)
        }
    };
    h.stop().await;
    (call, upload)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_dial_answered() {
    let (_, up) = play_and_check(
        "iax2/inbound_answered",
        "",
        Expect {
            direction: "inbound",
            outcome: "answered",
            employee: Some("101"),
            talkers: &[("101", 6)],
            rang: &["101"],
            history: Some(("answered", Some("101"), 6)),
            popups: 1,
        },
    )
    .await;
    assert_eq!(up.and_then(|u| u.record_url), None, "not recorded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_dial_caller_hung_up() {
    play_and_check(
        "iax2/inbound_missed",
        "",
        Expect {
            direction: "inbound",
            outcome: "missed",
            employee: None,
            talkers: &[],
            rang: &["101"],
            history: Some(("no answer", Some("101"), 0)),
            popups: 1,
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_dial_busy() {
    play_and_check(
        "synthetic/inbound_busy",
        "",
        Expect {
            direction: "inbound",
            outcome: "busy",
            employee: None,
            talkers: &[],
            rang: &["102"],
            history: Some(("busy", Some("102"), 0)),
            popups: 1,
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_dial_unavailable_is_failed() {
    play_and_check(
        "synthetic/inbound_unavailable",
        "",
        Expect {
            direction: "inbound",
            outcome: "failed",
            employee: None,
            talkers: &[],
            rang: &[],
            history: Some(("failed", None, 0)),
            popups: 0,
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ring_group_second_answers() {
    play_and_check(
        "iax2/ring_group_second_answers",
        "",
        Expect {
            direction: "inbound",
            outcome: "answered",
            employee: Some("102"),
            talkers: &[("102", 5)],
            rang: &["101", "102"],
            history: Some(("answered", Some("102"), 5)),
            popups: 2,
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ring_group_nobody_answers() {
    play_and_check(
        "synthetic/ring_group_nobody_answers",
        "",
        Expect {
            direction: "inbound",
            outcome: "missed",
            employee: None,
            talkers: &[],
            rang: &["101", "102"],
            history: Some(("no answer", Some("101"), 0)),
            popups: 2,
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hunt_group_second_answers() {
    play_and_check(
        "synthetic/hunt_group",
        "",
        Expect {
            direction: "inbound",
            outcome: "answered",
            employee: Some("102"),
            talkers: &[("102", 4)],
            rang: &["101", "102"],
            history: Some(("answered", Some("102"), 4)),
            popups: 2,
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_agent_answers_and_is_recorded() {
    let (call, up) = play_and_check(
        "iax2/queue_agent_answers",
        "",
        Expect {
            direction: "inbound",
            outcome: "answered",
            employee: Some("101"),
            talkers: &[("101", 5)],
            rang: &["102", "101"],
            history: Some(("answered", Some("101"), 5)),
            popups: 2,
        },
    )
    .await;
    assert_eq!(
        call.recording.as_deref(),
        Some("/var/spool/asterisk/monitor/1795627524.9.wav")
    );
    let url = up.and_then(|u| u.record_url).expect("recordUrl");
    assert!(
        url.contains("/recordings/cb-office-1795627524.9?exp="),
        "a signed link to the call: {url}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_caller_abandons() {
    play_and_check(
        "synthetic/queue_abandon",
        "",
        Expect {
            direction: "inbound",
            outcome: "missed",
            employee: None,
            talkers: &[],
            rang: &["102"],
            history: Some(("no answer", Some("102"), 0)),
            popups: 1,
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_channels_collapse_to_the_device() {
    play_and_check(
        "local/inbound_answered",
        "",
        Expect {
            direction: "inbound",
            outcome: "answered",
            employee: Some("101"),
            talkers: &[("101", 6)],
            rang: &["101"],
            history: Some(("answered", Some("101"), 6)),
            popups: 1,
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_queue_members() {
    let (call, _) = play_and_check(
        "local/queue_agent_answers",
        "",
        Expect {
            direction: "inbound",
            outcome: "answered",
            employee: Some("101"),
            talkers: &[("101", 5)],
            rang: &["102", "101"],
            history: Some(("answered", Some("101"), 5)),
            popups: 2,
        },
    )
    .await;
    assert_eq!(
        call.recording.as_deref(),
        Some("/var/spool/asterisk/monitor/1795627203.15.wav")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attended_transfer() {
    play_and_check(
        "iax2/attended_transfer",
        "",
        Expect {
            direction: "inbound",
            outcome: "answered",
            employee: Some("102"),
            talkers: &[("101", 2), ("102", 7)],
            rang: &["101", "102"],
            history: Some(("answered", Some("102"), 10)),
            popups: 2,
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blind_transfer() {
    play_and_check(
        "synthetic/blind_transfer",
        "",
        Expect {
            direction: "inbound",
            outcome: "answered",
            employee: Some("102"),
            talkers: &[("101", 3), ("102", 5)],
            rang: &["101", "102"],
            history: Some(("answered", Some("102"), 8)),
            popups: 2,
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn voicemail_named_by_asterisk() {
    let (call, up) = play_and_check(
        "iax2/inbound_voicemail",
        "",
        Expect {
            direction: "inbound",
            outcome: "voicemail",
            employee: None,
            talkers: &[],
            rang: &["102"],
            history: Some(("no answer", Some("102"), 0)),
            popups: 1,
        },
    )
    .await;
    let vm: serde_json::Value =
        serde_json::from_str(call.voicemail.as_deref().expect("voicemail")).expect("json");
    assert_eq!(vm["mailbox"], "102@default");
    assert_eq!(
        vm["message"],
        "/var/spool/asterisk/voicemail/default/102/INBOX/msg0000"
    );
    assert!(
        up.and_then(|u| u.record_url).is_some(),
        "the voicemail is linked"
    );
}

/// Sets a file's modification time to the recorded call's time (the fixtures carry
/// Asterisk's clock from the day they were recorded).
fn touch_at(path: &std::path::Path, epoch_secs: u64) {
    std::fs::write(path, b"RIFF").expect("write");
    let f = std::fs::File::options()
        .write(true)
        .open(path)
        .expect("open");
    f.set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(epoch_secs))
        .expect("mtime");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn voicemail_found_on_disk_when_asterisk_does_not_name_it() {
    let spool = tempfile::tempdir().expect("tempdir");
    let inbox = spool.path().join("default/102/INBOX");
    std::fs::create_dir_all(&inbox).expect("mkdir");
    // An old message, and the one this call left (its time is the call's end).
    touch_at(&inbox.join("msg0000.wav"), 1_795_600_000);
    touch_at(&inbox.join("msg0001.wav"), 1_795_685_613);
    touch_at(&inbox.join("msg0001.txt"), 1_795_685_613);
    let extra = format!("voicemail_dir = \"{}\"", spool.path().display());
    let (call, _) = play_and_check(
        "synthetic/voicemail_no_varset",
        &extra,
        Expect {
            direction: "inbound",
            outcome: "voicemail",
            employee: None,
            talkers: &[],
            rang: &["102"],
            history: Some(("no answer", Some("102"), 0)),
            popups: 1,
        },
    )
    .await;
    let vm: serde_json::Value =
        serde_json::from_str(call.voicemail.as_deref().expect("voicemail")).expect("json");
    let message = vm["message"].as_str().expect("message");
    assert!(message.ends_with("default/102/INBOX/msg0001"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn voicemail_without_a_message_is_missed() {
    let spool = tempfile::tempdir().expect("tempdir");
    let extra = format!("voicemail_dir = \"{}\"", spool.path().display());
    play_and_check(
        "synthetic/voicemail_no_varset",
        &extra,
        Expect {
            direction: "inbound",
            outcome: "missed",
            employee: None,
            talkers: &[],
            rang: &["102"],
            history: Some(("no answer", Some("102"), 0)),
            popups: 1,
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recording_from_mixmonitor() {
    let (call, up) = play_and_check(
        "iax2/recording",
        "",
        Expect {
            direction: "inbound",
            outcome: "answered",
            employee: Some("101"),
            talkers: &[("101", 6)],
            rang: &["101"],
            history: Some(("answered", Some("101"), 6)),
            popups: 1,
        },
    )
    .await;
    assert_eq!(
        call.recording.as_deref(),
        Some("/var/spool/asterisk/monitor/20261125-172756-+79167654321-74951234500-1795627676.33.wav")
    );
    assert!(up.and_then(|u| u.record_url).is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recording_found_by_channel_id_when_not_announced() {
    let monitor = tempfile::tempdir().expect("tempdir");
    let day = monitor.path().join("2026/11/25");
    std::fs::create_dir_all(&day).expect("mkdir");
    touch_at(
        &day.join("in-74951234567-+79161234567-1795627488.2.wav"),
        1_795_627_497,
    );
    let extra = format!("recordings_dir = \"{}\"", monitor.path().display());
    let (call, _) = play_and_check(
        "iax2/inbound_answered",
        &extra,
        Expect {
            direction: "inbound",
            outcome: "answered",
            employee: Some("101"),
            talkers: &[("101", 6)],
            rang: &["101"],
            history: Some(("answered", Some("101"), 6)),
            popups: 1,
        },
    )
    .await;
    let path = call.recording.expect("recording found");
    assert!(
        path.ends_with("2026/11/25/in-74951234567-+79161234567-1795627488.2.wav"),
        "{path}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbound_answered() {
    play_and_check(
        "iax2/outbound_answered",
        "",
        Expect {
            direction: "outbound",
            outcome: "answered",
            employee: Some("101"),
            talkers: &[("101", 6)],
            rang: &[],
            history: Some(("answered", Some("101"), 6)),
            popups: 0,
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbound_not_answered() {
    play_and_check(
        "iax2/outbound_no_answer",
        "",
        Expect {
            direction: "outbound",
            outcome: "missed",
            employee: Some("101"),
            talkers: &[],
            rang: &[],
            history: Some(("no answer", Some("101"), 0)),
            popups: 0,
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbound_busy() {
    play_and_check(
        "synthetic/outbound_busy",
        "",
        Expect {
            direction: "outbound",
            outcome: "busy",
            employee: Some("102"),
            talkers: &[],
            rang: &[],
            history: Some(("busy", Some("102"), 0)),
            popups: 0,
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn internal_call_is_tracked_without_crm_effects() {
    play_and_check(
        "synthetic/internal_call",
        "",
        Expect {
            direction: "internal",
            outcome: "answered",
            employee: Some("101"),
            talkers: &[],
            rang: &[],
            history: None,
            popups: 0,
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interleaved_calls_are_kept_apart() {
    let h = Harness::start().await;
    h.play("synthetic/two_interleaved_calls").await;
    let state = h
        .wait_crm("both calls in the history", |s| s.calls.len() == 2)
        .await;
    let by_id = |id: &str| {
        state
            .calls
            .iter()
            .find(|c| c.external_id.as_deref() == Some(id))
            .cloned()
            .expect("call uploaded")
    };
    let a = by_id("cb-office-1795685654.22");
    let b = by_id("cb-office-1795685657.24");
    assert_eq!(
        (a.result.as_deref(), a.code.as_deref(), a.duration),
        (Some("answered"), Some("101"), Some(6))
    );
    assert_eq!(
        (b.result.as_deref(), b.code.as_deref(), b.duration),
        (Some("no answer"), Some("102"), Some(0))
    );
    assert_eq!(a.phone, "+79031239876");
    assert_eq!(b.phone, "+79267654321");
    h.stop().await;
}
