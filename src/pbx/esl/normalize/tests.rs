//! Tests of the FreeSWITCH translation: the recorded calls, each event kind, the leg
//! memory across reconnects and restarts, the value tables.

use super::*;
use crate::pbx::esl::{EslCodec, EslItem};
use bytes::BytesMut;
use tokio_util::codec::Decoder;

/// The event bodies of a recording, in order.
fn bodies(name: &str) -> Vec<bytes::Bytes> {
    let path = format!(
        "{}/tests/fixtures/esl/{name}.esl",
        env!("CARGO_MANIFEST_DIR")
    );
    let bytes = std::fs::read(path).expect("fixture");
    let mut buf = BytesMut::from(&bytes[..]);
    let mut codec = EslCodec::new();
    let mut out = Vec::new();
    while let Ok(Some(item)) = codec.decode(&mut buf) {
        if let EslItem::Message(m) = item {
            if m.content_type() == Some("text/event-plain") {
                out.push(m.body);
            }
        }
    }
    out
}

/// Every `PbxEvent` a recording gives, in order.
fn events_of(name: &str) -> Vec<PbxEvent> {
    let mut normalizer = EslNormalizer::new();
    let mut out = Vec::new();
    for body in bodies(name) {
        let r = normalizer.normalize(&PlainEvent::parse(&body), Timestamp(1), &mut out);
        assert!(!matches!(r, Err(Skip::Malformed(_))), "{name}: {r:?}");
    }
    assert_eq!(normalizer.live_legs(), 0, "{name}: every leg destroyed");
    out
}

fn short(ev: &PbxEvent) -> String {
    let id = |c: &str| c.chars().take(4).collect::<String>();
    let kind = match &ev.kind {
        PbxEventKind::ChannelCreated { endpoint, .. } => {
            format!("created {}", endpoint.as_deref().unwrap_or("-"))
        }
        PbxEventKind::DialBegin {
            dest,
            dest_endpoint,
            ..
        } => format!(
            "dial {} {}",
            id(&dest.0),
            dest_endpoint.as_deref().unwrap_or("-")
        ),
        PbxEventKind::DialEnd { dest, outcome, .. } => {
            format!("dialend {} {outcome:?}", id(&dest.0))
        }
        PbxEventKind::HungUp { cause, .. } => format!("hangup {cause:?}"),
        PbxEventKind::Bridged { .. } => "bridged".into(),
        PbxEventKind::Unbridged { .. } => "unbridged".into(),
        PbxEventKind::QueueAgentRinging {
            queue, endpoint, ..
        } => {
            format!(
                "agent ringing {queue} {}",
                endpoint.as_deref().unwrap_or("-")
            )
        }
        PbxEventKind::QueueAgentConnected {
            queue, endpoint, ..
        } => {
            format!(
                "agent connected {queue} {}",
                endpoint.as_deref().unwrap_or("-")
            )
        }
        PbxEventKind::QueueAbandoned { queue } => format!("abandoned {queue}"),
        PbxEventKind::VoicemailStarted { mailbox } => format!("voicemail {mailbox}"),
        PbxEventKind::VoicemailLeft { mailbox, .. } => format!("message {mailbox}"),
        PbxEventKind::Recording { .. } => "recording".into(),
        PbxEventKind::DialResult { outcome } => format!("result {outcome:?}"),
        other => format!("{other:?}"),
    };
    format!("{} {} {kind}", id(&ev.call), id(&ev.channel.0))
}

#[test]
fn inbound_answered_reads_as_a_dial_answered_and_a_bridge() {
    let got: Vec<String> = events_of("inbound_answered").iter().map(short).collect();
    assert_eq!(
        got,
        [
            "58b4 58b4 created +79161234567",
            "58b4 58b4 dial e81a 101",
            "58b4 58b4 dialend e81a Answered",
            "58b4 58b4 bridged",
            "58b4 e81a bridged",
            // 101 hangs up first; its leg is then out of the bridge.
            "58b4 e81a hangup Some(16)",
            "58b4 58b4 unbridged",
            "58b4 58b4 result Answered",
            "58b4 58b4 hangup Some(16)",
        ]
    );
}

#[test]
fn a_caller_giving_up_ends_the_ringing_leg_as_cancelled_by_the_leg_itself() {
    let got: Vec<String> = events_of("inbound_missed").iter().map(short).collect();
    assert_eq!(
        got,
        [
            "012a 012a created +79035556677",
            "012a 012a dial 12c3 101",
            "012a 012a result Cancelled",
            // ORIGINATOR_CANCEL, with `hangup_cause_q850` 16 as FreeSWITCH gives it.
            "012a 012a hangup Some(16)",
            // The caller is gone: the dial's end is reported on the ringing leg.
            "012a 12c3 dialend 12c3 Cancelled",
            "012a 12c3 hangup Some(16)",
        ]
    );
}

#[test]
fn ring_group_losers_are_cancelled_and_the_winner_answered() {
    let events = events_of("ring_group_second_answers");
    let ends: Vec<String> = events
        .iter()
        .filter(|e| matches!(e.kind, PbxEventKind::DialEnd { .. }))
        .map(short)
        .collect();
    assert_eq!(ends.len(), 2, "{ends:?}");
    assert!(ends.iter().any(|e| e.ends_with("Answered")), "{ends:?}");
    assert!(ends.iter().any(|e| e.ends_with("Cancelled")), "{ends:?}");
    let call = &events[0].call;
    assert!(events.iter().all(|e| e.call == *call), "one call");
}

#[test]
fn queue_agent_legs_join_the_members_call() {
    let got: Vec<String> = events_of("queue_agent_answers").iter().map(short).collect();
    let call = &got[0][..4];
    assert!(got.iter().all(|e| e.starts_with(call)), "{got:#?}");
    let wanted = [
        "agent ringing sales 102",
        "dialend 7025 NoAnswer",
        "agent ringing sales 101",
        "dialend e9db Answered",
        "agent connected sales 101",
        "recording",
    ];
    let mut at = 0;
    for w in wanted {
        let found = got[at..].iter().position(|e| e.ends_with(w));
        assert!(found.is_some(), "{w:?} after {at} in {got:#?}");
        at += found.unwrap_or(0) + 1;
    }
}

#[test]
fn voicemail_recording_is_the_message_not_a_call_recording() {
    let got: Vec<String> = events_of("inbound_voicemail").iter().map(short).collect();
    assert!(
        got.iter().any(|e| e.ends_with("voicemail 102@192.0.2.2")),
        "{got:#?}"
    );
    assert!(
        got.iter().any(|e| e.ends_with("message 102@192.0.2.2")),
        "{got:#?}"
    );
    assert!(!got.iter().any(|e| e.ends_with("recording")), "{got:#?}");
}

/// A carrier call through loopback channels: the trunk leg's `-b` half joins the
/// `-a` half's call, and so does the handset's `-b` half of the phone leg: four
/// channels, one call.
#[test]
fn loopback_halves_join_the_call_of_their_other_half() {
    let events = events_of("loopback/inbound_answered");
    let call = &events[0].call;
    assert!(events.iter().all(|e| e.call == *call), "one call");
    let pairs = events
        .iter()
        .filter(|e| matches!(e.kind, PbxEventKind::PairedWith { .. }))
        .count();
    assert_eq!(pairs, 2, "the trunk's pair and the phone's pair");
    let events = events_of("loopback/outbound_answered");
    assert!(events.iter().all(|e| e.call == events[0].call), "one call");
}

/// `originate user/101 &bridge(…)`: the employee's leg is placed by FreeSWITCH for no
/// other leg; the gateway leg is dialed by it.
#[test]
fn an_originated_leg_is_marked_and_the_leg_it_bridges_joins_its_call() {
    let got: Vec<String> = events_of("synthetic/originate_user_bridge_answered")
        .iter()
        .map(short)
        .collect();
    assert_eq!(got[0], "50a7 50a7 created 101");
    assert_eq!(got[1], "50a7 50a7 Originated");
    assert!(
        got[2].starts_with("50a7 50a7 dial 0977 89031112233"),
        "{got:#?}"
    );
    assert!(got.iter().all(|e| e.starts_with("50a7")), "{got:#?}");
}

#[test]
fn outbound_trunk_leg_not_answering_is_no_answer() {
    let got: Vec<String> = events_of("outbound_no_answer").iter().map(short).collect();
    assert!(got[0].ends_with("created 101"), "{got:#?}");
    assert!(got.iter().any(|e| e.contains("NoAnswer")), "{got:#?}");
}

/// The caller hanging up while the queue rings an agent: the real member-queue-end
/// event of the recording, as mod_callcenter sends it for a caller who left
/// (`CC-Cause: Cancel`).
#[test]
fn a_caller_leaving_the_queue_is_an_abandon_and_the_call_is_missed() {
    let mut normalizer = EslNormalizer::new();
    let mut tracker = crate::call::CallTracker::new(crate::call::TrackerConfig {
        pbx: "office".into(),
        ..Default::default()
    });
    let mut out = Vec::new();
    let mut summary = None;
    let mut start: Option<String> = None;
    for body in bodies("queue_agent_answers") {
        let m = &body;
        let ev = PlainEvent::parse(m);
        if ev.get("CC-Action").as_deref() == Some("member-queue-start") {
            start = Some(String::from_utf8_lossy(m).into_owned());
        }
        let agent_answers = ev.name() == Some("CHANNEL_ANSWER")
            && ev.get("variable_cc_member_session_uuid").is_some();
        if agent_answers {
            // The caller leaves while 101 still rings: mod_callcenter ends the
            // member with `CC-Cause: Cancel` (the member-queue-start event of the
            // recording, as member-queue-end).
            let left = start
                .take()
                .expect("member-queue-start before")
                .replace(
                    "CC-Action: member-queue-start",
                    "CC-Action: member-queue-end",
                )
                .replace(
                    "CC-Action:",
                    "CC-Cause: Cancel\nCC-Cancel-Reason: NONE\nCC-Action:",
                );
            let _ =
                normalizer.normalize(&PlainEvent::parse(left.as_bytes()), Timestamp(2), &mut out);
            break;
        }
        let _ = normalizer.normalize(&ev, Timestamp(1), &mut out);
    }
    assert!(
        out.iter()
            .any(|e| matches!(&e.kind, PbxEventKind::QueueAbandoned { queue } if queue == "sales")),
        "{out:#?}"
    );
    for ev in &out {
        for u in tracker.apply(ev) {
            if let crate::call::CallStage::Ended(s) = u.stage {
                summary = Some(s);
            }
        }
    }
    // The caller's leg and the ringing agent leg hang up.
    let hangups: Vec<PbxEvent> = tracker_hangups(&out);
    for ev in &hangups {
        for u in tracker.apply(ev) {
            if let crate::call::CallStage::Ended(s) = u.stage {
                summary = Some(s);
            }
        }
    }
    let s = summary.expect("the call ended");
    assert_eq!(s.outcome, crate::call::Outcome::Missed);
    assert_eq!(s.queue.as_deref(), Some("sales"));
    assert_eq!(s.employee, None);
}

/// Hang-ups of every channel the events named, as the PBX would send them.
fn tracker_hangups(events: &[PbxEvent]) -> Vec<PbxEvent> {
    let mut seen: Vec<(Id, ChannelId)> = Vec::new();
    for ev in events {
        let mut add = |c: &ChannelId| {
            if !seen.iter().any(|(_, s)| s == c) {
                seen.push((ev.call.clone(), c.clone()));
            }
        };
        add(&ev.channel);
        if let PbxEventKind::DialBegin { dest, .. } = &ev.kind {
            add(dest);
        }
    }
    seen.into_iter()
        .rev()
        .map(|(call, channel)| PbxEvent {
            at: Timestamp(3),
            call,
            channel,
            kind: PbxEventKind::HungUp {
                cause: Some(16),
                seen_as: Box::default(),
            },
        })
        .collect()
}

#[test]
fn campaign_variables_set_before_the_bridge_are_known_when_it_rings() {
    let mut normalizer = EslNormalizer::with_variables(&["UTM_SOURCE", "UTM_CAMPAIGN"]);
    let mut tracker = crate::call::CallTracker::new(crate::call::TrackerConfig {
        pbx: "office".into(),
        ..Default::default()
    });
    let mut out = Vec::new();
    let mut ringing = None;
    for body in bodies("inbound_answered") {
        // The dialplan ran `set UTM_SOURCE=yandex` and `set UTM_CAMPAIGN=winter sale`
        // on the caller's leg before `bridge`: its later events show them.
        let text = String::from_utf8_lossy(&body).replace(
            "\nvariable_direction: inbound\n",
            "\nvariable_direction: inbound\nvariable_UTM_SOURCE: yandex\nvariable_UTM_CAMPAIGN: winter%20sale\n",
        );
        let ev = PlainEvent::parse(text.as_bytes());
        let _ = normalizer.normalize(&ev, Timestamp(1), &mut out);
        for e in out.drain(..) {
            for u in tracker.apply(&e) {
                if matches!(u.stage, crate::call::CallStage::Ringing { .. }) && ringing.is_none() {
                    ringing = Some(u.header.campaign.clone());
                }
            }
        }
    }
    let campaign = ringing.expect("it rang");
    assert_eq!(campaign.source.as_deref(), Some("yandex"));
    assert_eq!(campaign.campaign.as_deref(), Some("winter sale"));
}

#[test]
fn an_event_without_its_ids_is_malformed_and_noise_is_ignored() {
    let mut n = EslNormalizer::new();
    let mut out = Vec::new();
    let ev = PlainEvent::parse(b"Event-Name: CHANNEL_CREATE\nChannel-Name: sofia/x/1\n\n");
    assert_eq!(
        n.normalize(&ev, Timestamp(1), &mut out),
        Err(Skip::Malformed("Unique-ID"))
    );
    let ev = PlainEvent::parse(b"Event-Name: CHANNEL_STATE\nUnique-ID: a\n\n");
    assert_eq!(n.normalize(&ev, Timestamp(1), &mut out), Err(Skip::Ignored));
    let ev = PlainEvent::parse(b"no event at all");
    assert_eq!(
        n.normalize(&ev, Timestamp(1), &mut out),
        Err(Skip::Malformed("Event-Name"))
    );
    assert!(out.is_empty());
}

#[test]
fn endpoints_are_read_from_channel_names() {
    for (name, want) in [
        ("sofia/internal/101@127.0.0.1:5090", Some("101")),
        (
            "sofia/external/+79161234567@127.0.0.1",
            Some("+79161234567"),
        ),
        ("sofia/gateway/carrier/89031112233", Some("89031112233")),
        ("user/102@example.com", Some("102")),
        ("loopback/103-a", Some("103")),
        ("garbage", None),
    ] {
        assert_eq!(endpoint_of_channel(name).as_deref(), want, "{name}");
    }
}

proptest::proptest! {
    #[test]
    fn random_events_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..2048)) {
        let mut n = EslNormalizer::new();
        let mut out = Vec::new();
        let _ = n.normalize(&PlainEvent::parse(&bytes), Timestamp(1), &mut out);
        let mut with_name = b"Event-Name: CHANNEL_HANGUP_COMPLETE\n".to_vec();
        with_name.extend_from_slice(&bytes);
        let _ = n.normalize(&PlainEvent::parse(&with_name), Timestamp(1), &mut out);
    }
}
