//! Parity: the same call on Asterisk and on FreeSWITCH gives the same call summary and
//! the same CRM records. One table of scenarios; each row names an Asterisk recording
//! (tests/fixtures/asterisk) and a FreeSWITCH recording (tests/fixtures/esl) of the same
//! call in the same office. Each row is played twice over real sockets, once through a
//! scripted AMI peer and once through a scripted event socket, each time into the real
//! daemon and a fresh retailCRM stand-in, and the CRM's records are compared; the pure
//! middle's summaries are compared too.
//!
//! The two recordings of a row are two real calls made by hand on two PBXs, so their
//! timings differ by up to a second (a caller who gave up after 5.2 s on one and 5.8 s
//! on the other): waiting and total durations may differ by 1 s; everything else
//! (outcome, employee, who rang, who talked and how long, recording, voicemail, queue,
//! and every CRM record) must be the same, apart from ids, dates and file paths.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use callbridge::call::{CallStage, CallSummary};
use callbridge::daemon;
use callbridge::tools::sim::ami::AmiSim;
use callbridge::tools::sim::esl::{EslSim, EslSimOptions};
use callbridge::tools::sim::retailcrm::{RetailCrmSim, SimState};
use common::{esl_fixture, ESL_PASSWORD};
use serde_json::Value;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

fn read(dir: &str, name: &str, ext: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(dir)
        .join(format!("{name}.{ext}"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

enum Pbx {
    Asterisk(&'static str),
    FreeSwitch(&'static str),
}

/// Plays one recording into the real daemon over real sockets; returns the CRM's state
/// once every call ended and every CRM action was delivered.
async fn crm_effects(pbx: Pbx) -> SimState {
    let crm = RetailCrmSim::start(common::crm_options())
        .await
        .expect("CRM sim");
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("cb.db");
    let ami = AmiSim::start(common::ami_options()).await.expect("AMI sim");
    let esl = EslSim::start(EslSimOptions {
        password: ESL_PASSWORD.into(),
    })
    .await
    .expect("ESL sim");
    let toml = match pbx {
        Pbx::Asterisk(_) => common::config_toml(ami.addr().port(), &crm.base_url(), &db, ""),
        Pbx::FreeSwitch(_) => {
            common::freeswitch_config(esl.addr().port(), &crm.base_url(), &db, "")
        }
    };
    let cfg = callbridge::config::from_toml_str(&toml).expect("config");
    let shutdown = CancellationToken::new();
    let (tx, rx) = oneshot::channel();
    let daemon = tokio::spawn(daemon::run(cfg, shutdown.clone(), Some(tx)));
    let running = rx.await.expect("daemon ready");
    match pbx {
        Pbx::Asterisk(name) => {
            assert!(ami.wait_for_logins(1, Duration::from_secs(10)).await);
            ami.play(&common::fixture(name), 20.0).await;
        }
        Pbx::FreeSwitch(name) => {
            assert!(esl.wait_for_logins(1, Duration::from_secs(10)).await);
            esl.play(&esl_fixture(name), 20.0).await;
        }
    }
    common::wait_settled(&running.store, 1, Duration::from_secs(20)).await;
    let state = crm.state();
    shutdown.cancel();
    daemon.await.expect("join").expect("daemon stops cleanly");
    ami.stop();
    esl.stop();
    crm.shutdown();
    state
}

/// The summary the pure middle makes of a recording (the only call in it).
fn summary(dir: &str, name: &str, ext: &str) -> CallSummary {
    let bytes = read(dir, name, ext);
    let report = callbridge::tools::replay::replay_any(&bytes, "office", &[]);
    let mut ended: Vec<CallSummary> = report
        .updates
        .into_iter()
        .filter_map(|u| match u.stage {
            CallStage::Ended(s) => Some(*s),
            _ => None,
        })
        .collect();
    assert_eq!(ended.len(), 1, "{dir}/{name}: one call ends");
    ended.remove(0)
}

/// What must be equal in two summaries of the same call, and the durations that may
/// differ by a second.
fn comparable(s: &CallSummary) -> (Value, [u32; 2]) {
    let value = serde_json::json!({
        "outcome": s.outcome.as_str(),
        "direction": s.header.direction.as_str(),
        "customer": s.header.customer_number,
        "did": s.header.did,
        "employee": s.employee,
        "rang": s.rang,
        "talkers": s.talkers.iter().map(|t| (t.extension.clone(), t.talk_secs)).collect::<Vec<_>>(),
        "talk_secs": s.talk_secs,
        "answered": s.answered_at.is_some(),
        "recorded": s.recording.is_some(),
        // The mailbox's number; its domain is the PBX's own (`default` on Asterisk,
        // the SIP domain on FreeSWITCH).
        "voicemail": s.voicemail.as_ref().map(|v| (v.mailbox.split('@').next().map(str::to_string), v.message.is_some())),
        "queue": s.queue,
    });
    (value, [s.wait_secs, s.duration_secs])
}

/// Masks what differs between two runs of the same call by nature: ids made of the
/// PBX's channel ids, dates and times, links and file paths.
fn masked(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let v = match k.as_str() {
                        "date" | "createdAt" | "externalId" | "callExternalId" | "recordUrl" => {
                            Value::String(if v.is_null() { "-" } else { "<masked>" }.into())
                        }
                        _ => masked(v),
                    };
                    (k.clone(), v)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(masked).collect()),
        Value::String(s) => Value::String(
            s.split(' ')
                .map(|word| {
                    let timeish = word.bytes().any(|b| b.is_ascii_digit())
                        && (word.contains(':') || word.contains('-') || word.contains('/'))
                        && !word.starts_with('+');
                    if timeish {
                        "<t>"
                    } else {
                        word
                    }
                })
                .collect::<Vec<_>>()
                .join(" "),
        ),
        other => other.clone(),
    }
}

/// Equal, but for `duration` and `durationWaiting`, which may differ by one second.
fn assert_same(path: &str, a: &Value, b: &Value) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for k in keys {
                let (va, vb) = (
                    x.get(k).unwrap_or(&Value::Null),
                    y.get(k).unwrap_or(&Value::Null),
                );
                if matches!(k.as_str(), "duration" | "durationWaiting") {
                    let (na, nb) = (va.as_i64().unwrap_or(-99), vb.as_i64().unwrap_or(-99));
                    assert!(
                        (na - nb).abs() <= 1,
                        "{path}.{k}: Asterisk {va} vs FreeSWITCH {vb}"
                    );
                } else {
                    assert_same(&format!("{path}.{k}"), va, vb);
                }
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            assert_eq!(
                x.len(),
                y.len(),
                "{path}: Asterisk {a:#} vs FreeSWITCH {b:#}"
            );
            for (i, (va, vb)) in x.iter().zip(y).enumerate() {
                assert_same(&format!("{path}[{i}]"), va, vb);
            }
        }
        _ => assert_eq!(a, b, "{path}: Asterisk vs FreeSWITCH"),
    }
}

fn records(state: &SimState) -> Value {
    masked(&serde_json::json!({
        "call_events": state.call_events,
        "calls": state.calls,
        "customers": state.customers,
        "orders": state.orders,
        "tasks": state.tasks,
    }))
}

async fn parity(asterisk: &'static str, freeswitch: &'static str) {
    // The pure middle first: the summaries.
    let (dir, name) = asterisk.split_once('/').expect("dir/name");
    let (a, a_times) = comparable(&summary(&format!("asterisk/{dir}"), name, "ami"));
    let (f, f_times) = comparable(&summary("esl", freeswitch, "esl"));
    assert_eq!(a, f, "summaries of {asterisk} and {freeswitch}");
    for (what, (x, y)) in ["wait", "duration"].iter().zip(a_times.iter().zip(f_times)) {
        assert!(
            x.abs_diff(y) <= 1,
            "{what}: Asterisk {x} s vs FreeSWITCH {y} s"
        );
    }
    // Then the daemon over real sockets: the CRM's records.
    let (on_asterisk, on_freeswitch) = tokio::join!(
        crm_effects(Pbx::Asterisk(asterisk)),
        crm_effects(Pbx::FreeSwitch(freeswitch))
    );
    assert!(
        !on_asterisk.calls.is_empty(),
        "{asterisk}: the call reached the CRM's history"
    );
    // PARITY_DUMP=1 shows both sides' records.
    if std::env::var("PARITY_DUMP").is_ok() {
        eprintln!("{:#}\n{:#}", records(&on_asterisk), records(&on_freeswitch));
    }
    assert_same("crm", &records(&on_asterisk), &records(&on_freeswitch));
}

macro_rules! parity_table {
    ($($test:ident: $asterisk:literal <=> $freeswitch:literal;)*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $test() {
                parity($asterisk, $freeswitch).await;
            }
        )*
    };
}

parity_table! {
    answered: "iax2/inbound_answered" <=> "inbound_answered";
    missed: "iax2/inbound_missed" <=> "inbound_missed";
    ring_group: "iax2/ring_group_second_answers" <=> "ring_group_second_answers";
    queue: "iax2/queue_agent_answers" <=> "queue_agent_answers";
    queue_with_a_filtered_subscription: "iax2/queue_agent_answers" <=> "queue_agent_answers_filtered";
    voicemail: "iax2/inbound_voicemail" <=> "inbound_voicemail";
    outbound_answered: "iax2/outbound_answered" <=> "outbound_answered";
    outbound_not_answered: "iax2/outbound_no_answer" <=> "outbound_no_answer";
    recorded: "iax2/recording" <=> "recording";
    // The Local world of Asterisk and the loopback world of FreeSWITCH: channels that
    // are halves of a pipe through the PBX; the outbound one placed by an originate.
    through_local_and_loopback: "local/inbound_answered" <=> "loopback/inbound_answered";
    originated_through_local_and_loopback: "local/outbound_answered" <=> "loopback/outbound_answered";
    // The same worlds, written in the recordings' shape (synthetic/README.md).
    missed_through_local_and_loopback: "synthetic/local_inbound_missed" <=> "synthetic/loopback_inbound_missed";
    ring_group_through_local_and_loopback: "synthetic/local_ring_group_second_answers" <=> "synthetic/loopback_ring_group_second_answers";
    voicemail_through_local_and_loopback: "synthetic/local_inbound_voicemail" <=> "synthetic/loopback_inbound_voicemail";
    not_answered_through_local_and_loopback: "synthetic/local_outbound_no_answer" <=> "synthetic/loopback_outbound_no_answer";
    recorded_through_local_and_loopback: "synthetic/local_recording" <=> "synthetic/loopback_recording";
    queue_through_local_and_loopback: "local/queue_agent_answers" <=> "synthetic/loopback_queue_agent_answers";
    // Click-to-call ringing the employee first: `Originate` of `Local/101@internal`,
    // `originate user/101 &bridge(…)`.
    click_to_call_extension_first: "synthetic/local_originate_extension_first" <=> "synthetic/originate_user_bridge_answered";
    // Shapes the recordings lack, written after them (see each synthetic/README.md).
    busy: "synthetic/inbound_busy" <=> "synthetic/inbound_busy";
    outbound_busy: "synthetic/outbound_busy" <=> "synthetic/outbound_busy";
    blind_transfer: "synthetic/blind_transfer" <=> "synthetic/blind_transfer";
}
