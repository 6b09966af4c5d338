//! Tests of the AMI translation: channel names, each event kind, the channel list item.

use super::*;

fn frame(lines: &[(&str, &str)]) -> AmiFrame {
    let mut f = AmiFrame::new();
    for (k, v) in lines {
        f.push(k, v);
    }
    f
}

#[test]
fn endpoints_from_channel_names() {
    let cases = [
        ("IAX2/101-13051", Some("101")),
        ("PJSIP/101-0000000a", Some("101")),
        ("SIP/102-00000001", Some("102")),
        ("IAX2/trunk-15474", Some("trunk")),
        ("PJSIP/my-provider-00000003", Some("my-provider")),
        ("Local/101@phones-00000001;1", Some("101")),
        (
            "Local/74951234567@from-trunk-00000000;2",
            Some("74951234567"),
        ),
        ("DAHDI/1-1", Some("1")),
        ("garbage", None),
        ("PJSIP/", None),
    ];
    for (name, want) in cases {
        assert_eq!(endpoint_of_channel(name).as_deref(), want, "{name}");
    }
}

#[test]
fn newchannel_keeps_did_and_drops_unknown_caller_name() {
    let f = frame(&[
        ("Event", "Newchannel"),
        ("Timestamp", "1795627488.472224"),
        ("Channel", "IAX2/trunk-15474"),
        ("CallerIDNum", "+79161234567"),
        ("CallerIDName", "<unknown>"),
        ("Context", "from-trunk"),
        ("Exten", "74951234567"),
        ("Uniqueid", "1795627488.2"),
        ("Linkedid", "1795627488.2"),
    ]);
    let ev = normalize(&f, Timestamp(0)).expect("event");
    assert_eq!(ev.at, Timestamp(1_795_627_488_472_224));
    assert_eq!(ev.call, "1795627488.2");
    assert_eq!(
        ev.kind,
        PbxEventKind::ChannelCreated {
            name: "IAX2/trunk-15474".into(),
            endpoint: Some("trunk".into()),
            caller_number: Some("+79161234567".into()),
            caller_name: None,
            exten: Some("74951234567".into()),
            context: Some("from-trunk".into()),
        }
    );
}

#[test]
fn missing_timestamp_uses_read_time() {
    let f = frame(&[
        ("Event", "Hangup"),
        ("Uniqueid", "1.5"),
        ("Linkedid", "1.4"),
        ("Cause", "19"),
    ]);
    let ev = normalize(&f, Timestamp(42)).expect("event");
    assert_eq!(ev.at, Timestamp(42));
    assert!(matches!(
        ev.kind,
        PbxEventKind::HungUp {
            cause: Some(19),
            ..
        }
    ));
}

#[test]
fn skips_responses_noise_and_malformed() {
    let resp = frame(&[("Response", "Success"), ("ActionID", "x")]);
    assert_eq!(normalize(&resp, Timestamp(0)), Err(Skip::NotAnEvent));
    let varset = frame(&[("Event", "VarSet"), ("Uniqueid", "1.1")]);
    assert_eq!(normalize(&varset, Timestamp(0)), Err(Skip::Ignored));
    let no_uid = frame(&[("Event", "Hangup"), ("Cause", "16")]);
    assert_eq!(
        normalize(&no_uid, Timestamp(0)),
        Err(Skip::Malformed("Uniqueid"))
    );
    let dial = frame(&[
        ("Event", "DialBegin"),
        ("Channel", "IAX2/trunk-1"),
        ("Uniqueid", "1.1"),
    ]);
    assert_eq!(
        normalize(&dial, Timestamp(0)),
        Err(Skip::Malformed("DestChannel"))
    );
}

#[test]
fn header_names_in_another_case_still_work() {
    let f = frame(&[
        ("Event", "Hangup"),
        ("UNIQUEID", "1.5"),
        ("linkedid", "1.4"),
        ("Cause", "17"),
    ]);
    let ev = normalize(&f, Timestamp(7)).expect("event");
    assert_eq!((ev.call.as_str(), ev.channel.0.as_str()), ("1.4", "1.5"));
    assert!(matches!(
        ev.kind,
        PbxEventKind::HungUp {
            cause: Some(17),
            ..
        }
    ));
}

#[test]
fn queue_interfaces() {
    for (i, want) in [
        ("IAX2/102", Some("102")),
        ("PJSIP/101", Some("101")),
        ("SIP/101", Some("101")),
        ("Local/101@phones/n", Some("101")),
        ("Local/101@from-queue", Some("101")),
        ("nothing", None),
    ] {
        assert_eq!(endpoint_of_interface(i).as_deref(), want, "{i}");
    }
}

#[test]
fn voicemail_and_variables() {
    let vm = frame(&[
        ("Event", "Newexten"),
        ("Uniqueid", "1.4"),
        ("Linkedid", "1.4"),
        ("Application", "VoiceMail"),
        ("AppData", "102@default,u"),
    ]);
    assert_eq!(
        normalize(&vm, Timestamp(0)).map(|e| e.kind),
        Ok(PbxEventKind::VoicemailStarted {
            mailbox: "102@default".into()
        })
    );
    let bare = frame(&[
        ("Event", "Newexten"),
        ("Uniqueid", "1.4"),
        ("Application", "VoiceMail"),
        ("AppData", "103"),
    ]);
    assert_eq!(
        normalize(&bare, Timestamp(0)).map(|e| e.kind),
        Ok(PbxEventKind::VoicemailStarted {
            mailbox: "103@default".into()
        })
    );
    let noop = frame(&[
        ("Event", "Newexten"),
        ("Uniqueid", "1.4"),
        ("Application", "NoOp"),
    ]);
    assert_eq!(normalize(&noop, Timestamp(0)), Err(Skip::Ignored));
    let rec = frame(&[
        ("Event", "VarSet"),
        ("Uniqueid", "1.4"),
        ("Variable", "MIXMONITOR_FILENAME"),
        ("Value", "/var/spool/asterisk/monitor/1.4.wav"),
    ]);
    assert_eq!(
        normalize(&rec, Timestamp(0)).map(|e| e.kind),
        Ok(PbxEventKind::Variable {
            name: "MIXMONITOR_FILENAME".into(),
            value: "/var/spool/asterisk/monitor/1.4.wav".into()
        })
    );
    let other = frame(&[
        ("Event", "VarSet"),
        ("Uniqueid", "1.4"),
        ("Variable", "RINGTIME"),
    ]);
    assert_eq!(normalize(&other, Timestamp(0)), Err(Skip::Ignored));
}

/// The `DialBegin` of `Originate` (no caller block, as recorded in
/// tests/fixtures/asterisk/local/outbound_answered.ami) names the channel the PBX
/// placed.
#[test]
fn an_originates_dial_marks_the_channel_it_placed() {
    let f = frame(&[
        ("Event", "DialBegin"),
        ("Timestamp", "1795627257.261883"),
        ("DestChannel", "Local/89031112233@internal-0000000e;1"),
        ("DestCallerIDNum", "101"),
        ("DestUniqueid", "1795627257.28"),
        ("DestLinkedid", "1795627257.28"),
        ("DialString", "89031112233@internal"),
    ]);
    let ev = normalize(&f, Timestamp(0)).expect("event");
    assert_eq!(
        (ev.call.as_str(), ev.channel.0.as_str()),
        ("1795627257.28", "1795627257.28")
    );
    assert_eq!(ev.kind, PbxEventKind::Originated);
}

#[test]
fn dial_statuses() {
    assert_eq!(dial_outcome("ANSWER"), DialOutcome::Answered);
    assert_eq!(dial_outcome("CANCEL"), DialOutcome::Cancelled);
    assert_eq!(dial_outcome("NOANSWER"), DialOutcome::NoAnswer);
    assert_eq!(dial_outcome("BUSY"), DialOutcome::Busy);
    assert_eq!(dial_outcome("CHANUNAVAIL"), DialOutcome::Failed);
    assert_eq!(dial_outcome("GOTO"), DialOutcome::Other);
}

#[test]
fn core_show_channel_item() {
    let mut f = AmiFrame::new();
    for (k, v) in [
        ("Event", "CoreShowChannel"),
        ("ActionID", "cb-resync-1"),
        ("Channel", "IAX2/101-304"),
        ("ChannelState", "6"),
        ("CallerIDNum", "101"),
        ("Uniqueid", "1795627531.11"),
        ("Linkedid", "1795627524.9"),
        ("BridgeId", "87f893e8"),
        ("Application", "AppQueue"),
        ("Duration", "00:01:05"),
    ] {
        f.push(k, v);
    }
    let live = live_channel(&f).expect("live channel");
    assert_eq!(live.call, "1795627524.9");
    assert_eq!(live.endpoint.as_deref(), Some("101"));
    assert!(live.up && !live.ringing);
    assert_eq!(live.bridge.as_deref(), Some("87f893e8"));
    assert_eq!(live.duration_secs, 65);
}
