//! The tracker over recorded calls (tests/fixtures) and written event scripts.

use super::apply::mailbox_of_message;
use super::*;
use crate::tools::replay::replay_bytes;

/// Plays a recorded transcript through codec, normalize and tracker; returns the one
/// call's summary and all its stages.
fn play(bytes: &[u8]) -> (CallSummary, Vec<CallStage>) {
    let report = replay_bytes(bytes, "office", &[]);
    assert_eq!(report.malformed, 0);
    let stages: Vec<CallStage> = report.updates.iter().map(|u| u.stage.clone()).collect();
    let ended: Vec<&CallSummary> = stages
        .iter()
        .filter_map(|s| match s {
            CallStage::Ended(s) => Some(s.as_ref()),
            _ => None,
        })
        .collect();
    assert_eq!(ended.len(), 1, "one call ends: {stages:#?}");
    (ended[0].clone(), stages)
}

fn talkers(s: &CallSummary) -> Vec<(&str, u32)> {
    s.talkers
        .iter()
        .map(|t| (t.extension.as_str(), t.talk_secs))
        .collect()
}

macro_rules! fixture {
    ($path:literal) => {
        include_bytes!(concat!("../../../tests/fixtures/asterisk/", $path))
    };
}

#[test]
fn direct_dial_answered() {
    let (s, stages) = play(fixture!("iax2/inbound_answered.ami"));
    assert_eq!(
        stages[0],
        CallStage::Ringing {
            extensions: vec!["101".into()],
            new: vec!["101".into()]
        }
    );
    assert_eq!(
        stages[1],
        CallStage::Answered {
            extension: "101".into()
        }
    );
    assert_eq!(s.header.direction, Direction::Inbound);
    assert_eq!(s.header.customer_number.as_deref(), Some("+79161234567"));
    assert_eq!(s.header.did.as_deref(), Some("74951234567"));
    assert_eq!(s.header.call_id, "1795627488.2");
    assert_eq!(s.outcome, Outcome::Answered);
    assert_eq!(s.employee.as_deref(), Some("101"));
    assert_eq!(s.talk_secs, 6, "README: talked 6 s");
    assert_eq!(s.wait_secs, 3, "README: rang 3 s");
    assert_eq!(talkers(&s), vec![("101", 6)]);
    assert!(!s.reconstructed);
}

#[test]
fn direct_dial_caller_hung_up_is_missed() {
    let (s, stages) = play(fixture!("iax2/inbound_missed.ami"));
    assert_eq!(s.outcome, Outcome::Missed);
    assert_eq!(s.rang, vec!["101".to_string()]);
    assert_eq!(s.employee, None);
    assert_eq!(s.header.customer_number.as_deref(), Some("+79035556677"));
    assert_eq!(s.talk_secs, 0);
    assert!(s.talkers.is_empty());
    assert!(!stages
        .iter()
        .any(|u| matches!(u, CallStage::Answered { .. })));
}

#[test]
fn ring_group_second_answers() {
    let (s, stages) = play(fixture!("iax2/ring_group_second_answers.ami"));
    // Both ring before anyone answers; only 102 is the answerer.
    let ringing: Vec<&CallStage> = stages
        .iter()
        .filter(|s| matches!(s, CallStage::Ringing { .. }))
        .collect();
    assert_eq!(ringing.len(), 2);
    assert_eq!(s.rang, vec!["101".to_string(), "102".to_string()]);
    assert_eq!(s.outcome, Outcome::Answered);
    assert_eq!(s.employee.as_deref(), Some("102"));
    assert_eq!(talkers(&s), vec![("102", 5)]);
    assert_eq!(s.wait_secs, 3);
}

#[test]
fn queue_second_agent_answers_and_is_recorded() {
    let (s, _) = play(fixture!("iax2/queue_agent_answers.ami"));
    assert_eq!(s.rang, vec!["102".to_string(), "101".to_string()]);
    assert_eq!(s.outcome, Outcome::Answered);
    assert_eq!(s.employee.as_deref(), Some("101"));
    assert_eq!(talkers(&s), vec![("101", 5)]);
    assert_eq!(s.queue.as_deref(), Some("sales"));
    assert_eq!(s.wait_secs, 9, "AgentConnect HoldTime=9");
    assert_eq!(
        s.recording.as_deref(),
        Some("/var/spool/asterisk/monitor/1795627524.9.wav")
    );
}

#[test]
fn local_channels_collapse_to_the_device() {
    let (s, _) = play(fixture!("local/inbound_answered.ami"));
    assert_eq!(s.outcome, Outcome::Answered);
    assert_eq!(s.employee.as_deref(), Some("101"));
    assert_eq!(s.header.customer_number.as_deref(), Some("+79161234567"));
    assert_eq!(s.header.did.as_deref(), Some("74951234567"));
    assert_eq!(talkers(&s), vec![("101", 6)]);
}

#[test]
fn local_queue_members() {
    let (s, _) = play(fixture!("local/queue_agent_answers.ami"));
    assert_eq!(s.rang, vec!["102".to_string(), "101".to_string()]);
    assert_eq!(s.employee.as_deref(), Some("101"));
    assert_eq!(talkers(&s), vec![("101", 5)]);
    // Queue recordings are named after the caller leg's uniqueid, here not the Linkedid.
    assert_eq!(
        s.recording.as_deref(),
        Some("/var/spool/asterisk/monitor/1795627203.15.wav")
    );
    assert!(s.channels.contains(&"1795627203.15".to_string()));
}

#[test]
fn attended_transfer_last_talker_answers() {
    let (s, _) = play(fixture!("iax2/attended_transfer.ami"));
    assert_eq!(s.outcome, Outcome::Answered);
    assert_eq!(s.employee.as_deref(), Some("102"), "102 talked last");
    assert_eq!(
        talkers(&s),
        vec![("101", 2), ("102", 7)],
        "README: 101 ~2 s, 102 ~7.4 s"
    );
    assert_eq!(s.rang, vec!["101".to_string(), "102".to_string()]);
}

#[test]
fn voicemail_after_no_answer() {
    let (s, _) = play(fixture!("iax2/inbound_voicemail.ami"));
    assert_eq!(s.outcome, Outcome::Voicemail);
    assert_eq!(s.rang, vec!["102".to_string()]);
    let vm = s.voicemail.expect("voicemail");
    assert_eq!(vm.mailbox, "102@default");
    assert_eq!(
        vm.message.as_deref(),
        Some("/var/spool/asterisk/voicemail/default/102/INBOX/msg0000")
    );
}

#[test]
fn recording_from_mixmonitor_before_dial() {
    let (s, _) = play(fixture!("iax2/recording.ami"));
    assert_eq!(s.outcome, Outcome::Answered);
    assert_eq!(s.employee.as_deref(), Some("101"));
    assert_eq!(
        s.recording.as_deref(),
        Some("/var/spool/asterisk/monitor/20261125-172756-+79167654321-74951234500-1795627676.33.wav")
    );
}

#[test]
fn outbound_answered_is_outbound_to_the_dialed_number() {
    let (s, stages) = play(fixture!("iax2/outbound_answered.ami"));
    assert!(!stages
        .iter()
        .any(|u| matches!(u, CallStage::Ringing { .. })));
    assert_eq!(s.header.direction, Direction::Outbound);
    assert_eq!(s.header.customer_number.as_deref(), Some("89031112233"));
    assert_eq!(s.header.did, None);
    assert_eq!(s.outcome, Outcome::Answered);
    assert_eq!(s.employee.as_deref(), Some("101"));
    assert_eq!(s.talk_secs, 6);
    assert_eq!(s.wait_secs, 4, "remote rang 4 s");
}

#[test]
fn outbound_no_answer_is_missed() {
    let (s, _) = play(fixture!("iax2/outbound_no_answer.ami"));
    assert_eq!(s.header.direction, Direction::Outbound);
    assert_eq!(s.header.customer_number.as_deref(), Some("84957654321"));
    assert_eq!(s.outcome, Outcome::Missed);
    assert_eq!(s.employee.as_deref(), Some("101"));
}

#[test]
fn configured_ranges_decide_what_is_internal() {
    let ranges = InternalExtensions::new(["2001".to_string()]).with_ranges(vec![
        crate::call::ExtensionRange {
            first: 100,
            last: 199,
        },
    ]);
    assert!(ranges.contains("101"));
    assert!(ranges.contains("2001"), "mapped extensions count too");
    assert!(!ranges.contains("200"));
    assert!(!ranges.contains("trunk"));
    let heuristic = InternalExtensions::new(Vec::<String>::new());
    assert!(heuristic.contains("200"));
    assert!(!heuristic.contains("89031112233"));
}

#[test]
fn trunk_context_makes_an_extension_named_origin_inbound() {
    // A trunk whose channels are named like extensions (`SIP/100-…`) arriving in
    // from-trunk is still a customer.
    let mut t = CallTracker::new(TrackerConfig {
        pbx: "office".into(),
        internal: InternalExtensions::default(),
        trunk_contexts: vec!["from-trunk".into()],
        ..TrackerConfig::default()
    });
    let ev = |kind, ch: &str| PbxEvent {
        at: Timestamp(1),
        call: "5.1".into(),
        channel: ChannelId(ch.into()),
        kind,
    };
    t.apply(&ev(
        PbxEventKind::ChannelCreated {
            name: "SIP/100-00000001".into(),
            endpoint: Some("100".into()),
            caller_number: Some("+74950000000".into()),
            caller_name: None,
            exten: Some("74951234567".into()),
            context: Some("from-trunk".into()),
        },
        "5.1",
    ));
    let ups = t.apply(&ev(
        PbxEventKind::DialBegin {
            caller_number: None,
            dialer: Box::default(),
            dest: ChannelId("5.2".into()),
            dest_name: "SIP/101-00000002".into(),
            dest_endpoint: Some("101".into()),
            dial_string: Some("101".into()),
        },
        "5.1",
    ));
    assert_eq!(ups[0].header.direction, Direction::Inbound);
    assert!(matches!(ups[0].stage, CallStage::Ringing { .. }));
}

#[test]
fn stray_event_after_the_end_opens_no_call() {
    let mut t = CallTracker::new(TrackerConfig::default());
    let ev = |kind, ch: &str| PbxEvent {
        at: Timestamp(1),
        call: "9.1".into(),
        channel: ChannelId(ch.into()),
        kind,
    };
    t.apply(&ev(
        PbxEventKind::ChannelCreated {
            name: "IAX2/trunk-1".into(),
            endpoint: Some("trunk".into()),
            caller_number: Some("+7".into()),
            caller_name: None,
            exten: Some("1".into()),
            context: None,
        },
        "9.1",
    ));
    let ups = t.apply(&ev(
        PbxEventKind::HungUp {
            cause: Some(16),
            seen_as: Box::default(),
        },
        "9.1",
    ));
    assert!(matches!(
        ups.last().map(|u| &u.stage),
        Some(CallStage::Ended(_))
    ));
    let ups = t.apply(&ev(
        PbxEventKind::CallerKnown {
            caller_number: "+7".into(),
        },
        "9.1",
    ));
    assert!(ups.is_empty());
    assert_eq!((t.live_calls(), t.live_channels()), (0, 0));
}

/// A call written as a script of `(seconds, channel, event)` on call `7.1`.
fn script(steps: Vec<(i64, &str, PbxEventKind)>) -> Vec<CallUpdate> {
    let mut t = CallTracker::new(TrackerConfig {
        pbx: "office".into(),
        ..TrackerConfig::default()
    });
    let updates = steps
        .into_iter()
        .flat_map(|(secs, ch, kind)| {
            t.apply(&PbxEvent {
                at: Timestamp(1_000_000_000 + secs * 1_000_000),
                call: "7.1".into(),
                channel: ChannelId(ch.into()),
                kind,
            })
        })
        .collect();
    assert!(t.is_idle(), "nothing left behind");
    updates
}

fn created(name: &str, caller: Option<&str>, exten: &str) -> PbxEventKind {
    PbxEventKind::ChannelCreated {
        name: name.into(),
        endpoint: crate::pbx::ami::normalize::endpoint_of_channel(name),
        caller_number: caller.map(Into::into),
        caller_name: None,
        exten: Some(exten.into()),
        context: Some("internal".into()),
    }
}

fn dial(dest: &str, name: &str, dial_string: &str) -> PbxEventKind {
    PbxEventKind::DialBegin {
        caller_number: None,
        dialer: Box::default(),
        dest: ChannelId(dest.into()),
        dest_name: name.into(),
        dest_endpoint: crate::pbx::ami::normalize::endpoint_of_channel(name),
        dial_string: Some(dial_string.into()),
    }
}

fn answered(dest: &str) -> PbxEventKind {
    PbxEventKind::DialEnd {
        dest: ChannelId(dest.into()),
        dest_endpoint: None,
        outcome: DialOutcome::Answered,
    }
}

fn bridged(bridge: &str) -> PbxEventKind {
    PbxEventKind::Bridged {
        bridge: bridge.into(),
    }
}

fn hung_up() -> PbxEventKind {
    PbxEventKind::HungUp {
        cause: Some(16),
        seen_as: Box::default(),
    }
}

fn the_end(updates: &[CallUpdate]) -> &CallSummary {
    let ends: Vec<&CallSummary> = updates
        .iter()
        .filter_map(|u| match &u.stage {
            CallStage::Ended(s) => Some(&**s),
            _ => None,
        })
        .collect();
    assert_eq!(ends.len(), 1, "{updates:#?}");
    ends[0]
}

/// Click-to-call as FreePBX-style tools place it: `Originate` of `Local/101@internal`
/// (the employee's phone rings first), then the `;1` half dials the customer. The
/// first dial, to the employee's own phone, does not make it an internal call, nor
/// pop up anything.
#[test]
fn an_originate_ringing_the_extension_first_is_its_call_out() {
    let updates = script(vec![
        (
            0,
            "7.1",
            created("Local/101@internal-00000001;1", None, "101"),
        ),
        (
            0,
            "7.2",
            created("Local/101@internal-00000001;2", None, "101"),
        ),
        (0, "7.1", PbxEventKind::Originated),
        (0, "7.2", dial("7.3", "PJSIP/101-00000001", "PJSIP/101")),
        (2, "7.2", answered("7.3")),
        (2, "7.2", bridged("b1")),
        (2, "7.3", bridged("b1")),
        (
            2,
            "7.1",
            dial("7.4", "PJSIP/trunk-00000002", "PJSIP/89031112233@trunk"),
        ),
        (6, "7.1", answered("7.4")),
        (6, "7.1", bridged("b2")),
        (6, "7.4", bridged("b2")),
        (12, "7.4", hung_up()),
        (12, "7.1", hung_up()),
        (12, "7.2", hung_up()),
        (12, "7.3", hung_up()),
    ]);
    assert!(
        !updates
            .iter()
            .any(|u| matches!(u.stage, CallStage::Ringing { .. })),
        "no pop-up for the employee's own phone: {updates:#?}"
    );
    let end = the_end(&updates);
    assert_eq!(end.header.direction, Direction::Outbound);
    assert_eq!(end.header.customer_number.as_deref(), Some("89031112233"));
    assert_eq!(end.outcome, Outcome::Answered);
    assert_eq!(end.employee.as_deref(), Some("101"));
    assert_eq!(talkers(end), [("101", 6)]);
}

/// The originate's caller id comes after the dial was judged (an inbound call from
/// nobody, to the outside number): the call turns around, as nothing depended on it
/// yet.
#[test]
fn a_caller_id_learned_after_the_dial_turns_the_call_around() {
    let updates = script(vec![
        (
            0,
            "7.1",
            created("Local/89031112233@internal-00000001;1", None, "89031112233"),
        ),
        (
            0,
            "7.2",
            created("Local/89031112233@internal-00000001;2", None, "89031112233"),
        ),
        (
            0,
            "7.2",
            dial("7.3", "PJSIP/trunk-00000002", "PJSIP/89031112233@trunk"),
        ),
        (
            0,
            "7.1",
            PbxEventKind::CallerKnown {
                caller_number: "101".into(),
            },
        ),
        (3, "7.2", answered("7.3")),
        (3, "7.2", bridged("b1")),
        (3, "7.3", bridged("b1")),
        (9, "7.3", hung_up()),
        (9, "7.2", hung_up()),
        (9, "7.1", hung_up()),
    ]);
    let end = the_end(&updates);
    assert_eq!(end.header.direction, Direction::Outbound);
    assert_eq!(end.header.customer_number.as_deref(), Some("89031112233"));
    assert_eq!(end.employee.as_deref(), Some("101"));
    assert_eq!(talkers(end), [("101", 6)]);
}

/// Once a step depends on who calls (an employee's phone rang: a pop-up), a later
/// caller id no longer changes the call.
#[test]
fn a_caller_id_learned_after_a_pop_up_changes_nothing() {
    let updates = script(vec![
        (
            0,
            "7.1",
            created("IAX2/trunk-00000001", Some("+79161234567"), "74951234567"),
        ),
        (0, "7.1", dial("7.2", "IAX2/101-00000002", "IAX2/101")),
        (
            1,
            "7.1",
            PbxEventKind::CallerKnown {
                caller_number: "+79169999999".into(),
            },
        ),
        (2, "7.1", answered("7.2")),
        (2, "7.1", bridged("b1")),
        (2, "7.2", bridged("b1")),
        (8, "7.2", hung_up()),
        (8, "7.1", hung_up()),
    ]);
    let end = the_end(&updates);
    assert_eq!(end.header.direction, Direction::Inbound);
    assert_eq!(end.header.customer_number.as_deref(), Some("+79161234567"));
    assert_eq!(end.employee.as_deref(), Some("101"));
}

/// An originate that names no extension (no caller id of ours) and first dials the
/// customer: a call out, the employee's being whoever talked with the customer.
#[test]
fn an_originate_naming_no_extension_is_the_call_of_whoever_talked() {
    let updates = script(vec![
        (
            0,
            "7.1",
            created("Local/89031112233@internal-00000001;1", None, "89031112233"),
        ),
        (
            0,
            "7.2",
            created("Local/89031112233@internal-00000001;2", None, "89031112233"),
        ),
        (0, "7.1", PbxEventKind::Originated),
        (
            0,
            "7.2",
            dial("7.3", "PJSIP/trunk-00000002", "PJSIP/89031112233@trunk"),
        ),
        (4, "7.2", answered("7.3")),
        (4, "7.2", bridged("b1")),
        (4, "7.3", bridged("b1")),
        (4, "7.1", dial("7.4", "PJSIP/102-00000003", "PJSIP/102")),
        (6, "7.1", answered("7.4")),
        (6, "7.1", bridged("b2")),
        (6, "7.4", bridged("b2")),
        (11, "7.3", hung_up()),
        (11, "7.2", hung_up()),
        (11, "7.1", hung_up()),
        (11, "7.4", hung_up()),
    ]);
    assert!(!updates
        .iter()
        .any(|u| matches!(u.stage, CallStage::Ringing { .. })));
    let end = the_end(&updates);
    assert_eq!(end.header.direction, Direction::Outbound);
    assert_eq!(end.header.customer_number.as_deref(), Some("89031112233"));
    assert_eq!(end.employee.as_deref(), Some("102"));
    assert_eq!(talkers(end), [("102", 5)]);
}

/// FreeSWITCH loopback halves are one pipe: a call rung through `loopback/sales`,
/// whose `-b` half dials the phone, reaches the employee through the pair.
#[test]
fn loopback_halves_carry_the_conversation() {
    let updates = script(vec![
        (
            0,
            "7.1",
            created("PJSIP/trunk-00000001", Some("+79161234567"), "74951234567"),
        ),
        (0, "7.1", dial("7.2", "loopback/sales-a", "sales")),
        (
            0,
            "7.3",
            created("loopback/sales-b", Some("+79161234567"), "sales"),
        ),
        (
            0,
            "7.3",
            PbxEventKind::PairedWith {
                other: ChannelId("7.2".into()),
            },
        ),
        (0, "7.3", dial("7.4", "PJSIP/101-00000004", "101")),
        (2, "7.3", answered("7.4")),
        (2, "7.3", bridged("b2")),
        (2, "7.4", bridged("b2")),
        (2, "7.1", answered("7.2")),
        (2, "7.1", bridged("b1")),
        (2, "7.2", bridged("b1")),
        (8, "7.4", hung_up()),
        (8, "7.3", hung_up()),
        (8, "7.2", hung_up()),
        (8, "7.1", hung_up()),
    ]);
    let end = the_end(&updates);
    assert_eq!(end.header.direction, Direction::Inbound);
    assert_eq!(end.rang, ["101"]);
    assert_eq!(end.employee.as_deref(), Some("101"));
    assert_eq!(talkers(end), [("101", 6)]);
}

#[test]
fn dial_string_numbers() {
    assert_eq!(
        number_of_dial_string("trunk/89031112233").as_deref(),
        Some("89031112233")
    );
    assert_eq!(
        number_of_dial_string("PJSIP/89031112233@provider").as_deref(),
        Some("89031112233")
    );
    assert_eq!(
        mailbox_of_message("/var/spool/asterisk/voicemail/default/102/INBOX/msg0000").as_deref(),
        Some("102@default")
    );
}

mod restore_tests {
    use super::*;
    use crate::pbx::ami::normalize::normalize;
    use crate::pbx::ami::{AmiCodec, AmiItem};
    use bytes::BytesMut;
    use tokio_util::codec::Decoder;

    fn events(bytes: &[u8]) -> Vec<PbxEvent> {
        let mut codec = AmiCodec::new();
        let mut buf = BytesMut::from(bytes);
        let mut out = Vec::new();
        while let Ok(Some(item)) = codec.decode(&mut buf) {
            if let AmiItem::Frame(f) = item {
                if let Ok(ev) = normalize(&f, Timestamp(0)) {
                    out.push(ev);
                }
            }
        }
        out
    }

    /// A channel of the PBX's list for call 1795627579.16 (the outbound recording).
    fn live_channel(
        channel: &str,
        name: &str,
        endpoint: &str,
        caller: &str,
        exten: &str,
    ) -> LiveChannel {
        LiveChannel {
            channel: ChannelId(channel.into()),
            call: "1795627579.16".into(),
            name: name.into(),
            endpoint: Some(endpoint.into()),
            up: true,
            ringing: false,
            caller_number: Some(caller.into()),
            exten: Some(exten.into()),
            context: Some("from-internal".into()),
            bridge: None,
            shows_bridge: true,
            dialed_by: None,
            hanging_up: false,
            duration_secs: 4,
            application: Some("Dial".into()),
            application_data: None,
        }
    }

    /// The one end among `stages`, checked to be the recording's outbound call to
    /// 89031112233.
    fn the_outbound_end(stages: &[CallUpdate]) -> &CallSummary {
        let ended: Vec<&CallSummary> = stages
            .iter()
            .filter_map(|u| match &u.stage {
                CallStage::Ended(s) => Some(&**s),
                _ => None,
            })
            .collect();
        assert_eq!(ended.len(), 1);
        assert_eq!(ended[0].header.direction, Direction::Outbound);
        assert_eq!(
            ended[0].header.customer_number.as_deref(),
            Some("89031112233")
        );
        ended[0]
    }

    #[test]
    fn a_restored_call_goes_on_where_it_stopped() {
        let evs = events(include_bytes!(
            "../../../tests/fixtures/asterisk/iax2/ring_group_second_answers.ami"
        ));
        let whole = {
            let mut t = CallTracker::new(TrackerConfig::default());
            evs.iter().flat_map(|e| t.apply(e)).last()
        };
        for cut in [5, evs.len() / 3, evs.len() / 2, evs.len() - 3] {
            let mut before = CallTracker::new(TrackerConfig::default());
            for e in &evs[..cut] {
                before.apply(e);
            }
            let json: Vec<String> = before
                .take_dirty()
                .iter()
                .filter_map(|id| before.snapshot(id))
                .map(|s| serde_json::to_string(&s).expect("json"))
                .collect();
            let mut after = CallTracker::new(TrackerConfig::default());
            for j in json {
                after.restore(serde_json::from_str(&j).expect("snapshot"));
            }
            let last = evs[cut..].iter().flat_map(|e| after.apply(e)).last();
            assert_eq!(last, whole, "cut at {cut}");
        }
    }

    /// A crash swallowed the far end's creation and the dial (the daemon saw the trunk
    /// channel only by later events): the PBX's channel list tells what that channel is,
    /// so the call is still outbound to the dialed number, not internal.
    #[test]
    fn resync_learns_the_far_end_of_a_call_whose_dial_was_missed() {
        let evs = events(include_bytes!(
            "../../../tests/fixtures/asterisk/iax2/outbound_answered.ami"
        ));
        let trunk = ChannelId("1795627579.17".into());
        let created = evs
            .iter()
            .position(|e| e.channel == trunk)
            .expect("trunk channel");
        let dialed = evs
            .iter()
            .position(|e| matches!(e.kind, PbxEventKind::DialBegin { .. }))
            .expect("dial");
        let bridged = evs
            .iter()
            .position(|e| matches!(e.kind, PbxEventKind::Bridged { .. }))
            .expect("bridge");
        let mut t = CallTracker::new(TrackerConfig::default());
        let mut stages = Vec::new();
        for e in evs[..created].iter().chain(&evs[dialed + 1..bridged]) {
            stages.extend(t.apply(e));
        }
        t.begin_resync(true);
        let live = live_channel;
        stages.extend(t.resync(
            Timestamp(1),
            &[
                live(
                    "1795627579.16",
                    "IAX2/101-10246",
                    "101",
                    "101",
                    "89031112233",
                ),
                live(
                    "1795627579.17",
                    "IAX2/trunk-1008",
                    "trunk",
                    "89031112233",
                    "s",
                ),
            ],
        ));
        for e in &evs[bridged..] {
            stages.extend(t.apply(e));
        }
        let end = the_outbound_end(&stages);
        assert_eq!(end.outcome, Outcome::Answered);
    }

    /// A crash swallowed the extension's channel creation and its dial: the restarted
    /// daemon hears of the call first by the trunk channel's events, after asking for the
    /// list. The list names the channel the call is named after (Linkedid = its
    /// Uniqueid): the extension started it, so the call is outbound to the dialed
    /// number, not an inbound call from the trunk.
    #[test]
    fn resync_finds_the_origin_of_a_call_first_heard_of_by_its_far_end() {
        let evs = events(include_bytes!(
            "../../../tests/fixtures/asterisk/iax2/outbound_answered.ami"
        ));
        let trunk = ChannelId("1795627579.17".into());
        let extension = ChannelId("1795627579.16".into());
        let dialed = evs
            .iter()
            .position(|e| matches!(e.kind, PbxEventKind::DialBegin { .. }))
            .expect("dial");
        // The first event of the trunk channel after the dial: the daemon's first word of
        // this call.
        let first_heard = dialed
            + 1
            + evs[dialed + 1..]
                .iter()
                .position(|e| e.channel == trunk)
                .expect("trunk event after the dial");
        let mut t = CallTracker::new(TrackerConfig::default());
        t.begin_resync(true);
        let mut stages = Vec::new();
        for e in &evs[first_heard..first_heard + 1] {
            stages.extend(t.apply(e));
        }
        let live = |channel: &ChannelId, name: &str, endpoint: &str, caller: &str, exten: &str| {
            live_channel(&channel.0, name, endpoint, caller, exten)
        };
        stages.extend(t.resync(
            Timestamp(1),
            &[
                live(&trunk, "IAX2/trunk-1008", "trunk", "89031112233", "s"),
                live(&extension, "IAX2/101-10246", "101", "101", "89031112233"),
            ],
        ));
        for e in &evs[first_heard + 1..] {
            stages.extend(t.apply(e));
        }
        let end = the_outbound_end(&stages);
        assert_eq!(end.outcome, Outcome::Answered);
        assert_eq!(end.employee.as_deref(), Some("101"));
    }

    /// A crash swallowed only the extension's channel creation: the restarted daemon
    /// hears of the call by the extension's next events and its dial before the list
    /// arrives. Until the list says what the origin is, the dial cannot be judged; once
    /// it does, the call is outbound to the dialed number (it was taken for an inbound
    /// call from "101" before, and got no history).
    #[test]
    fn a_dial_judged_before_the_origin_was_known_is_judged_again() {
        let evs = events(include_bytes!(
            "../../../tests/fixtures/asterisk/iax2/outbound_answered.ami"
        ));
        let origin = ChannelId("1795627579.16".into());
        let created = evs
            .iter()
            .position(|e| e.channel == origin)
            .expect("origin channel");
        let bridged = evs
            .iter()
            .position(|e| matches!(e.kind, PbxEventKind::Bridged { .. }))
            .expect("bridge");
        let mut t = CallTracker::new(TrackerConfig::default());
        t.begin_resync(true);
        let mut stages = Vec::new();
        for e in &evs[created + 1..bridged] {
            stages.extend(t.apply(e));
        }
        let extension = live_channel(&origin.0, "IAX2/101-10246", "101", "101", "89031112233");
        stages.extend(t.resync(Timestamp(1), &[extension]));
        for e in &evs[bridged..] {
            stages.extend(t.apply(e));
        }
        the_outbound_end(&stages);
    }

    /// No list at all (the call ended before one came): the events after the gap say
    /// what the channels are. A missed inbound call seen only from after its dial still
    /// has its caller's number (from the trunk's hang-up); an outbound call whose
    /// extension's creation was lost is outbound (its dial shows the extension).
    #[test]
    fn events_after_a_gap_say_what_their_channels_are() {
        let ended = |bytes: &[u8], from: &dyn Fn(&[PbxEvent]) -> usize| {
            let evs = events(bytes);
            let mut t = CallTracker::new(TrackerConfig::default());
            let updates: Vec<CallUpdate> =
                evs[from(&evs)..].iter().flat_map(|e| t.apply(e)).collect();
            updates
                .into_iter()
                .find_map(|u| match u.stage {
                    CallStage::Ended(s) => Some(s),
                    _ => None,
                })
                .expect("the call ends")
        };
        let after_dial = |evs: &[PbxEvent]| {
            1 + evs
                .iter()
                .position(|e| matches!(e.kind, PbxEventKind::DialBegin { .. }))
                .expect("dial")
        };
        let missed = ended(
            include_bytes!("../../../tests/fixtures/asterisk/iax2/inbound_missed.ami"),
            &after_dial,
        );
        assert_eq!(missed.header.direction, Direction::Inbound);
        assert_eq!(
            missed.header.customer_number.as_deref(),
            Some("+79035556677")
        );

        let after_creation = |evs: &[PbxEvent]| {
            1 + evs
                .iter()
                .position(|e| matches!(e.kind, PbxEventKind::ChannelCreated { .. }))
                .expect("creation")
        };
        let outbound = ended(
            include_bytes!("../../../tests/fixtures/asterisk/iax2/outbound_answered.ami"),
            &after_creation,
        );
        assert_eq!(outbound.header.direction, Direction::Outbound);
        assert_eq!(
            outbound.header.customer_number.as_deref(),
            Some("89031112233")
        );
    }

    /// After a gap, the list shows an extension still on a call to an outside number
    /// whose far end already hung up: the call is outbound to that number, not internal.
    #[test]
    fn a_call_known_only_from_the_list_keeps_its_dialed_number() {
        let mut t = CallTracker::new(TrackerConfig::default());
        t.begin_resync(true);
        let extension = LiveChannel {
            duration_secs: 9,
            ..live_channel(
                "1795627579.16",
                "IAX2/101-10246",
                "101",
                "101",
                "89031112233",
            )
        };
        let mut updates = t.resync(Timestamp(10_000_000), &[extension]);
        t.begin_resync(true);
        updates.extend(t.resync(Timestamp(20_000_000), &[]));
        let ended: Vec<_> = updates
            .iter()
            .filter_map(|u| match &u.stage {
                CallStage::Ended(s) => Some(s),
                _ => None,
            })
            .collect();
        assert_eq!(ended.len(), 1);
        assert!(ended[0].reconstructed);
        assert_eq!(ended[0].header.direction, Direction::Outbound);
        assert_eq!(
            ended[0].header.customer_number.as_deref(),
            Some("89031112233")
        );
    }
}
