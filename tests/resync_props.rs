//! A channel list never undoes what the events said: recorded calls of both PBXs are
//! played through the real normalizers and the tracker with resyncs inserted at random
//! points, each answered with the true channel list of that moment (built from the
//! recording's own events, as Asterisk's `CoreShowChannels` and FreeSWITCH's `show
//! channels as json` would show it, and read by the clients' own parsers). Every call
//! ends with the direction, caller, outcome, answerer, talkers and talk time it has
//! without the resyncs.

use std::collections::BTreeMap;

use bytes::BytesMut;
use callbridge::call::{CallStage, CallTracker, CallUpdate, TrackerConfig};
use callbridge::pbx::ami::normalize::{live_channel, normalize};
use callbridge::pbx::ami::{AmiCodec, AmiFrame, AmiItem};
use callbridge::pbx::esl::{EslCodec, EslItem, EslNormalizer, PlainEvent};
use callbridge::pbx::event::{LiveChannel, PbxEvent};
use callbridge::time::Timestamp;
use proptest::prelude::*;
use tokio_util::codec::Decoder;

const AMI: &[&str] = &[
    "iax2/inbound_answered",
    "iax2/inbound_missed",
    "iax2/ring_group_second_answers",
    "iax2/queue_agent_answers",
    "iax2/inbound_voicemail",
    "iax2/outbound_answered",
    "iax2/outbound_no_answer",
    "iax2/recording",
    "iax2/attended_transfer",
    "local/inbound_answered",
    "local/queue_agent_answers",
    "local/outbound_answered",
    "synthetic/blind_transfer",
    "synthetic/hunt_group",
    "synthetic/inbound_busy",
    "synthetic/queue_abandon",
    "synthetic/two_interleaved_calls",
    "synthetic/local_inbound_missed",
    "synthetic/local_ring_group_second_answers",
    "synthetic/local_inbound_voicemail",
    "synthetic/local_outbound_no_answer",
    "synthetic/local_recording",
    "synthetic/local_originate_extension_first",
];

const ESL: &[&str] = &[
    "inbound_answered",
    "inbound_missed",
    "ring_group_second_answers",
    "queue_agent_answers",
    "queue_agent_answers_filtered",
    "inbound_voicemail",
    "outbound_answered",
    "outbound_no_answer",
    "recording",
    "loopback/inbound_answered",
    "loopback/outbound_answered",
    "synthetic/blind_transfer",
    "synthetic/inbound_busy",
    "synthetic/outbound_busy",
    "synthetic/originate_user_bridge_answered",
    "synthetic/originate_user_bridge_no_answer",
    "synthetic/loopback_inbound_missed",
    "synthetic/loopback_ring_group_second_answers",
    "synthetic/loopback_queue_agent_answers",
    "synthetic/loopback_inbound_voicemail",
    "synthetic/loopback_outbound_no_answer",
    "synthetic/loopback_recording",
];

fn fixture(path: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/{path}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// What a call ended as, less what a list may fairly add (that it was reconstructed).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Outcome {
    direction: String,
    customer: Option<String>,
    did: Option<String>,
    outcome: String,
    employee: Option<String>,
    rang: Vec<String>,
    talkers: Vec<(String, u32)>,
    talk_secs: u32,
}

fn ends(updates: &[CallUpdate]) -> BTreeMap<String, Vec<Outcome>> {
    let mut out: BTreeMap<String, Vec<Outcome>> = BTreeMap::new();
    for u in updates {
        if let CallStage::Ended(s) = &u.stage {
            out.entry(u.header.call_id.clone())
                .or_default()
                .push(Outcome {
                    direction: s.header.direction.as_str().into(),
                    customer: s.header.customer_number.clone(),
                    did: s.header.did.clone(),
                    outcome: s.outcome.as_str().into(),
                    employee: s.employee.clone(),
                    rang: s.rang.clone(),
                    talkers: s
                        .talkers
                        .iter()
                        .map(|t| (t.extension.clone(), t.talk_secs))
                        .collect(),
                    talk_secs: s.talk_secs,
                });
        }
    }
    out
}

fn tracker() -> CallTracker {
    CallTracker::new(TrackerConfig {
        pbx: "office".into(),
        ..TrackerConfig::default()
    })
}

/// Where resyncs go: (asked before event `begin`, the list as it stood before event
/// `taken`, answered before event `answered`), `begin <= taken <= answered`.
type Round = (usize, usize, usize);

fn rounds(len: usize, picks: &[(u16, u16, u16)]) -> Vec<Round> {
    let mut out: Vec<Round> = picks
        .iter()
        .map(|&(a, b, c)| {
            let mut p = [
                usize::from(a) % (len + 1),
                usize::from(b) % (len + 1),
                usize::from(c) % (len + 1),
            ];
            p.sort_unstable();
            (p[0], p[1], p[2])
        })
        .collect();
    // One round at a time, as the clients ask: the next is asked once the last answered.
    out.sort_unstable();
    let mut last_answer = 0;
    out.retain(|r| {
        let keep = r.0 >= last_answer;
        if keep {
            last_answer = r.2;
        }
        keep
    });
    out
}

// ---- Asterisk ------------------------------------------------------------------------

/// One channel as Asterisk would list it, from the events seen so far.
#[derive(Clone, Default)]
struct AstChannel {
    fields: BTreeMap<&'static str, String>,
    created: f64,
}

/// The AMI recording's frames, and for each frame the channel list that stood after it.
fn asterisk(name: &str) -> AsteriskRecording {
    let bytes = fixture(&format!("asterisk/{name}.ami"));
    let mut codec = AmiCodec::new();
    let mut buf = BytesMut::from(&bytes[..]);
    let mut frames = Vec::new();
    while let Ok(Some(item)) = codec.decode(&mut buf) {
        if let AmiItem::Frame(f) = item {
            if f.event().is_some() {
                frames.push(f);
            }
        }
    }
    let mut live: BTreeMap<String, AstChannel> = BTreeMap::new();
    let mut lists = Vec::new();
    for f in &frames {
        let now: f64 = f
            .get("Timestamp")
            .and_then(|t| t.parse().ok())
            .unwrap_or(0.0);
        if let Some(uid) = f.get("Uniqueid") {
            match f.event() {
                Some("Newchannel") => {
                    live.insert(
                        uid.to_string(),
                        AstChannel {
                            created: now,
                            ..Default::default()
                        },
                    );
                }
                Some("Hangup") => {
                    live.remove(uid);
                }
                _ => {}
            }
            if let Some(ch) = live.get_mut(uid) {
                for key in [
                    "Channel",
                    "Linkedid",
                    "ChannelState",
                    "ChannelStateDesc",
                    "CallerIDNum",
                    "Context",
                    "Exten",
                ] {
                    if let Some(v) = f.get(key) {
                        ch.fields.insert(key, v.to_string());
                    }
                }
                match f.event() {
                    Some("BridgeEnter") => {
                        let b = f.get("BridgeUniqueid").unwrap_or_default();
                        ch.fields.insert("BridgeId", b.to_string());
                    }
                    Some("BridgeLeave") => {
                        ch.fields.insert("BridgeId", String::new());
                    }
                    Some("Newexten") => {
                        for (from, to) in [
                            ("Application", "Application"),
                            ("AppData", "ApplicationData"),
                        ] {
                            ch.fields
                                .insert(to, f.get(from).unwrap_or_default().to_string());
                        }
                    }
                    _ => {}
                }
            }
        }
        let list = live
            .iter()
            .filter_map(|(uid, ch)| {
                let mut frame = AmiFrame::new()
                    .with("Event", "CoreShowChannel")
                    .with("Uniqueid", uid);
                for (k, v) in &ch.fields {
                    frame.push(k, v);
                }
                let secs = (now - ch.created).max(0.0) as u64;
                frame.push(
                    "Duration",
                    &format!("{:02}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60),
                );
                live_channel(&frame)
            })
            .collect();
        lists.push(list);
    }
    (frames, lists)
}

/// What happens before each event (and, at `len`, after the last): resyncs asked and
/// lists answered (with the list as it stood before event `taken`).
enum Step {
    Ask,
    Answer { taken: usize },
}

fn schedule(len: usize, rounds: &[Round]) -> Vec<Vec<Step>> {
    let mut at: Vec<Vec<Step>> = (0..=len).map(|_| Vec::new()).collect();
    for &(begin, taken, answered) in rounds {
        at[begin].push(Step::Ask);
        at[answered].push(Step::Answer { taken });
    }
    at
}

fn play_asterisk(
    frames: &[AmiFrame],
    lists: &[Vec<LiveChannel>],
    rounds: &[Round],
) -> Vec<CallUpdate> {
    let mut t = tracker();
    let mut updates = Vec::new();
    let mut last = Timestamp(0);
    let steps = schedule(frames.len(), rounds);
    for (i, steps) in steps.iter().enumerate() {
        for step in steps {
            match step {
                Step::Ask => t.begin_resync(false),
                Step::Answer { taken } => {
                    let list = if *taken == 0 {
                        &[][..]
                    } else {
                        &lists[taken - 1][..]
                    };
                    updates.extend(t.resync(last, list));
                }
            }
        }
        if let Some(ev) = frames.get(i).and_then(|f| normalize(f, Timestamp(0)).ok()) {
            last = last.max(ev.at);
            updates.extend(t.apply(&ev));
        }
    }
    updates
}

// ---- FreeSWITCH ----------------------------------------------------------------------

/// The ESL recording's event bodies, and for each the `show channels as json` answer
/// that stood after it.
fn freeswitch(name: &str) -> (Vec<bytes::Bytes>, Vec<String>) {
    let bytes = fixture(&format!("esl/{name}.esl"));
    let mut codec = EslCodec::new();
    let mut buf = BytesMut::from(&bytes[..]);
    let mut bodies = Vec::new();
    while let Ok(Some(item)) = codec.decode(&mut buf) {
        if let EslItem::Message(m) = item {
            if m.content_type() == Some("text/event-plain") {
                bodies.push(m.body);
            }
        }
    }
    let mut rows: BTreeMap<String, BTreeMap<&'static str, String>> = BTreeMap::new();
    let mut lists = Vec::new();
    for body in &bodies {
        let ev = PlainEvent::parse(body);
        if let Some(uuid) = ev.get("Unique-ID").map(|u| u.to_string()) {
            match ev.name() {
                Some("CHANNEL_CREATE") => {
                    rows.insert(uuid.clone(), BTreeMap::new());
                }
                Some("CHANNEL_DESTROY") => {
                    rows.remove(&uuid);
                }
                _ => {}
            }
            if let Some(row) = rows.get_mut(&uuid) {
                for (col, header) in [
                    ("name", "Channel-Name"),
                    ("direction", "Call-Direction"),
                    ("cid_num", "Caller-Caller-ID-Number"),
                    ("dest", "Caller-Destination-Number"),
                    ("context", "Caller-Context"),
                    ("callstate", "Channel-Call-State"),
                    ("call_uuid", "Channel-Call-UUID"),
                ] {
                    if let Some(v) = ev.get(header) {
                        row.insert(col, v.to_string());
                    }
                }
                if let Some(created) = ev
                    .get("Caller-Channel-Created-Time")
                    .and_then(|t| t.parse::<i64>().ok())
                {
                    row.insert("created_epoch", (created / 1_000_000).to_string());
                }
                if ev.name() == Some("CHANNEL_EXECUTE") {
                    row.insert(
                        "application",
                        ev.get("Application").unwrap_or_default().to_string(),
                    );
                    row.insert(
                        "application_data",
                        ev.get("Application-Data").unwrap_or_default().to_string(),
                    );
                }
            }
        }
        let json_rows: Vec<serde_json::Value> = rows
            .iter()
            .map(|(uuid, row)| {
                let mut obj = serde_json::Map::new();
                obj.insert("uuid".into(), uuid.clone().into());
                for (k, v) in row {
                    obj.insert((*k).into(), v.clone().into());
                }
                serde_json::Value::Object(obj)
            })
            .collect();
        lists.push(
            serde_json::json!({ "row_count": json_rows.len(), "rows": json_rows }).to_string(),
        );
    }
    (bodies, lists)
}

fn play_freeswitch(bodies: &[bytes::Bytes], lists: &[String], rounds: &[Round]) -> Vec<CallUpdate> {
    let mut t = tracker();
    let mut n = EslNormalizer::new();
    let mut updates = Vec::new();
    let mut events: Vec<PbxEvent> = Vec::new();
    let mut last = Timestamp(0);
    let steps = schedule(bodies.len(), rounds);
    for (i, steps) in steps.iter().enumerate() {
        for step in steps {
            match step {
                Step::Ask => {
                    t.begin_resync(false);
                    n.begin_resync();
                }
                Step::Answer { taken } => {
                    let list = match taken {
                        0 => r#"{"row_count":0}"#,
                        k => lists[k - 1].as_str(),
                    };
                    let (channels, dialers) =
                        callbridge::pbx::esl::client::live_channels(list.as_bytes(), last)
                            .expect("a list");
                    n.learn_live(&channels, &dialers);
                    updates.extend(t.resync(last, &channels));
                }
            }
        }
        if let Some(body) = bodies.get(i) {
            let _ = n.normalize(&PlainEvent::parse(body), Timestamp(1), &mut events);
            for ev in events.drain(..) {
                last = last.max(ev.at);
                updates.extend(t.apply(&ev));
            }
        }
    }
    updates
}

/// A recording's frames and, after each, the channel list of that moment.
type AsteriskRecording = (Vec<AmiFrame>, Vec<Vec<LiveChannel>>);

fn asterisk_recordings() -> &'static Vec<AsteriskRecording> {
    static ALL: std::sync::OnceLock<Vec<AsteriskRecording>> = std::sync::OnceLock::new();
    ALL.get_or_init(|| AMI.iter().map(|f| asterisk(f)).collect())
}

fn freeswitch_recordings() -> &'static Vec<(Vec<bytes::Bytes>, Vec<String>)> {
    static ALL: std::sync::OnceLock<Vec<(Vec<bytes::Bytes>, Vec<String>)>> =
        std::sync::OnceLock::new();
    ALL.get_or_init(|| ESL.iter().map(|f| freeswitch(f)).collect())
}

/// The recordings end as their READMEs say without any resync (the baseline the
/// property compares with is right to begin with).
#[test]
fn without_resyncs_every_call_ends_once() {
    for (name, (frames, lists)) in AMI.iter().zip(asterisk_recordings()) {
        let got = ends(&play_asterisk(frames, lists, &[]));
        assert!(!got.is_empty(), "{name}");
        assert!(got.values().all(|v| v.len() == 1), "{name}: {got:#?}");
    }
    for (name, (bodies, lists)) in ESL.iter().zip(freeswitch_recordings()) {
        let got = ends(&play_freeswitch(bodies, lists, &[]));
        assert_eq!(got.len(), 1, "{name}: {got:#?}");
    }
}

/// The FreeSWITCH report this guards against: a list read while the call talks (no
/// bridge column) ended the conversation, and the history said 0 s.
#[test]
fn a_freeswitch_list_read_mid_conversation_keeps_the_talk_time() {
    let i = ESL
        .iter()
        .position(|n| *n == "inbound_answered")
        .expect("fixture");
    let (bodies, lists) = &freeswitch_recordings()[i];
    // The moment of the bridge, and a list taken two events later.
    let bridged = bodies
        .iter()
        .position(|b| PlainEvent::parse(b).name() == Some("CHANNEL_BRIDGE"))
        .expect("a bridge");
    let alone = ends(&play_freeswitch(bodies, lists, &[]));
    let with = ends(&play_freeswitch(
        bodies,
        lists,
        &[(bridged + 2, bridged + 2, bridged + 2)],
    ));
    assert_eq!(with, alone);
    let only = alone.values().next().expect("one call");
    assert_eq!(only[0].talkers, vec![("101".to_string(), 6)]);
}

proptest! {
    #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn an_asterisk_list_at_any_moment_changes_no_call(
        which in 0..AMI.len(),
        picks in proptest::collection::vec((any::<u16>(), any::<u16>(), any::<u16>()), 1..4),
    ) {
        let (frames, lists) = &asterisk_recordings()[which];
        let alone = ends(&play_asterisk(frames, lists, &[]));
        let rounds = rounds(frames.len(), &picks);
        let with = ends(&play_asterisk(frames, lists, &rounds));
        prop_assert_eq!(with, alone, "{} with resyncs {:?}", AMI[which], rounds);
    }

    #[test]
    fn a_freeswitch_list_at_any_moment_changes_no_call(
        which in 0..ESL.len(),
        picks in proptest::collection::vec((any::<u16>(), any::<u16>(), any::<u16>()), 1..4),
    ) {
        let (bodies, lists) = &freeswitch_recordings()[which];
        let alone = ends(&play_freeswitch(bodies, lists, &[]));
        let rounds = rounds(bodies.len(), &picks);
        let with = ends(&play_freeswitch(bodies, lists, &rounds));
        prop_assert_eq!(with, alone, "{} with resyncs {:?}", ESL[which], rounds);
    }
}
