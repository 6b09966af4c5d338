//! Properties of the call tracker over real event streams: any interleaving of several
//! concurrent calls gives each call exactly what it gets when played alone; arbitrary
//! event sequences never panic and never leave a call open after the stale sweep.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::BytesMut;
use callbridge::call::{CallStage, CallTracker, CallUpdate, TrackerConfig};
use callbridge::pbx::ami::normalize::normalize;
use callbridge::pbx::ami::{AmiCodec, AmiItem};
use callbridge::pbx::event::{ChannelId, DialOutcome, PbxEvent, PbxEventKind};
use callbridge::time::Timestamp;
use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use tokio_util::codec::Decoder;

const FIXTURES: &[&str] = &[
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
    "synthetic/blind_transfer",
    "synthetic/hunt_group",
    "synthetic/inbound_busy",
    "synthetic/queue_abandon",
];

fn events_of(name: &str) -> Vec<PbxEvent> {
    let path = format!(
        "{}/tests/fixtures/asterisk/{name}.ami",
        env!("CARGO_MANIFEST_DIR")
    );
    let bytes = std::fs::read(path).expect("fixture");
    let mut codec = AmiCodec::new();
    let mut buf = BytesMut::from(&bytes[..]);
    let mut out = Vec::new();
    while let Ok(Some(item)) = codec.decode(&mut buf) {
        if let AmiItem::Frame(frame) = item {
            if let Ok(ev) = normalize(&frame, Timestamp(0)) {
                out.push(ev);
            }
        }
    }
    out
}

/// Each call's updates, in order.
fn by_call(updates: Vec<CallUpdate>) -> BTreeMap<String, Vec<CallUpdate>> {
    let mut map: BTreeMap<String, Vec<CallUpdate>> = BTreeMap::new();
    for u in updates {
        map.entry(u.header.call_id.clone()).or_default().push(u);
    }
    map
}

fn play(events: &[PbxEvent]) -> (BTreeMap<String, Vec<CallUpdate>>, CallTracker) {
    let mut t = CallTracker::new(TrackerConfig::default());
    let updates = events.iter().flat_map(|e| t.apply(e)).collect();
    (by_call(updates), t)
}

fn recordings() -> &'static Vec<Vec<PbxEvent>> {
    static ALL: std::sync::OnceLock<Vec<Vec<PbxEvent>>> = std::sync::OnceLock::new();
    ALL.get_or_init(|| FIXTURES.iter().map(|f| events_of(f)).collect())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn interleaved_calls_end_as_when_played_alone(mask in 1u32..(1 << FIXTURES.len()), seed in any::<u64>()) {
        let all = recordings();
        let chosen: Vec<&Vec<PbxEvent>> = (0..FIXTURES.len()).filter(|i| mask & (1 << i) != 0).map(|i| &all[i]).collect();
        let mut alone = BTreeMap::new();
        for events in &chosen {
            let (calls, t) = play(events);
            prop_assert!(t.is_idle());
            alone.extend(calls);
        }
        // A random merge that keeps each call's own order.
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let mut cursors = vec![0usize; chosen.len()];
        let mut merged = Vec::new();
        loop {
            let open: Vec<usize> = (0..chosen.len()).filter(|&i| cursors[i] < chosen[i].len()).collect();
            if open.is_empty() { break; }
            let pick = open[rng.gen_range(0..open.len())];
            merged.push(chosen[pick][cursors[pick]].clone());
            cursors[pick] += 1;
        }
        let (together, t) = play(&merged);
        prop_assert!(t.is_idle(), "nothing left behind");
        prop_assert_eq!(together, alone);
    }

    #[test]
    fn arbitrary_events_never_panic_and_the_sweep_ends_everything(
        script in proptest::collection::vec((0u8..4, 0u8..6, 0u8..12, 0u8..4, 0u8..3), 0..200)
    ) {
        let mut t = CallTracker::new(TrackerConfig::default());
        let names = ["IAX2/trunk-1", "IAX2/101-2", "IAX2/102-3", "Local/101@phones-0001;1", "Local/101@phones-0001;2", "PJSIP/103-4"];
        let mut at = 1_000_000i64;
        for (call, chan, kind, other, bridge) in script {
            at += 1_000;
            let channel = ChannelId(format!("1.{chan}").into());
            let dest = ChannelId(format!("1.{other}").into());
            let kind = match kind {
                0 | 1 => PbxEventKind::ChannelCreated {
                    name: names[chan as usize].into(),
                    endpoint: names[chan as usize].split(['/', '-', '@']).nth(1).map(Into::into),
                    caller_number: Some("+79161234567".into()),
                    caller_name: None,
                    exten: Some("74951234567".into()),
                    context: Some("from-trunk".into()),
                },
                2 => PbxEventKind::DialBegin {
                    caller_number: None,
                    dialer: Box::default(),
                    dest: dest.clone(),
                    dest_name: names[other as usize].into(),
                    dest_endpoint: Some(format!("10{other}").into()),
                    dial_string: None,
                },
                3 => PbxEventKind::DialEnd { dest, dest_endpoint: None, outcome: [DialOutcome::Answered, DialOutcome::Busy, DialOutcome::NoAnswer, DialOutcome::Cancelled][other as usize] },
                4 => PbxEventKind::Bridged { bridge: format!("b{bridge}").into() },
                5 => PbxEventKind::Unbridged { bridge: format!("b{bridge}").into() },
                6 | 7 => PbxEventKind::HungUp {
                    cause: Some(16),
                    seen_as: Box::default(),
                },
                8 => PbxEventKind::VoicemailStarted { mailbox: "102@default".into() },
                9 => PbxEventKind::DialResult { outcome: DialOutcome::Busy },
                10 => PbxEventKind::QueueAgentRinging { queue: "q".into(), dest: Some(dest), endpoint: Some("101".into()) },
                _ => PbxEventKind::QueueAgentConnected { queue: "q".into(), dest: Some(dest), endpoint: Some("101".into()) },
            };
            let ev = PbxEvent { at: Timestamp(at), call: format!("1.{call}").into(), channel, kind };
            for u in t.apply(&ev) {
                if let CallStage::Ended(s) = &u.stage {
                    prop_assert!(s.talk_secs <= s.duration_secs + 1);
                }
            }
        }
        t.sweep(Timestamp(at + 3_600_000_000), Duration::from_secs(60));
        prop_assert!(t.is_idle(), "the sweep leaves nothing behind: {} calls, {} channels", t.live_calls(), t.live_channels());
    }
}
