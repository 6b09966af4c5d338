//! AMI frames → `PbxEvent`s. Pure: a frame and the moment it was read go in, at most one
//! event comes out. Everything Asterisk-specific about reading channels (channel-name
//! formats, `<unknown>` caller ids, DialStatus words) stays in this file.

use crate::pbx::ami::AmiFrame;
use crate::pbx::event::{ChannelId, DialOutcome, PbxEvent, PbxEventKind};
use crate::time::Timestamp;

/// Why a frame gave no event. Only `Malformed` is worth a warning; the rest is the normal
/// noise of AMI (VarSet is a third of all events).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Skip {
    /// Not an event (a response to an action).
    NotAnEvent,
    /// An event the tracker does not need.
    Ignored,
    /// An event we need, but a header it must carry is missing.
    Malformed(&'static str),
}

/// Translates one AMI event. `received_at` is used when the frame has no `Timestamp`
/// header (`timestampevents = no` in manager.conf).
pub fn normalize(frame: &AmiFrame, received_at: Timestamp) -> Result<PbxEvent, Skip> {
    let name = frame.event().ok_or(Skip::NotAnEvent)?;
    let at = frame
        .get("Timestamp")
        .and_then(Timestamp::parse_epoch)
        .unwrap_or(received_at);
    let kind = match name {
        "Newchannel" => PbxEventKind::ChannelCreated {
            name: frame.get("Channel").unwrap_or_default().to_string(),
            endpoint: frame.get("Channel").and_then(endpoint_of_channel),
            caller_number: known(frame.get("CallerIDNum")),
            caller_name: known(frame.get("CallerIDName")),
            exten: known(frame.get("Exten")),
            context: known(frame.get("Context")),
        },
        "Newstate" | "NewCallerid" => match known(frame.get("CallerIDNum")) {
            Some(caller_number) => PbxEventKind::CallerKnown { caller_number },
            None => return Err(Skip::Ignored),
        },
        "DialBegin" => {
            // A DialBegin without a caller block comes from Originate: the PBX itself is
            // calling out, and the destination channel will show up on its own.
            if frame.get("Channel").is_none() {
                return Err(Skip::Ignored);
            }
            let dest_name = frame
                .get("DestChannel")
                .ok_or(Skip::Malformed("DestChannel"))?;
            PbxEventKind::DialBegin {
                caller_number: known(frame.get("CallerIDNum")),
                dest: ChannelId(
                    frame
                        .get("DestUniqueid")
                        .ok_or(Skip::Malformed("DestUniqueid"))?
                        .to_string(),
                ),
                dest_name: dest_name.to_string(),
                dest_endpoint: endpoint_of_channel(dest_name),
                dial_string: known(frame.get("DialString")),
            }
        }
        "DialEnd" => {
            if frame.get("Channel").is_none() {
                return Err(Skip::Ignored);
            }
            PbxEventKind::DialEnd {
                dest: ChannelId(
                    frame
                        .get("DestUniqueid")
                        .ok_or(Skip::Malformed("DestUniqueid"))?
                        .to_string(),
                ),
                dest_endpoint: frame.get("DestChannel").and_then(endpoint_of_channel),
                outcome: dial_outcome(frame.get("DialStatus").unwrap_or_default()),
            }
        }
        "Hangup" => PbxEventKind::HungUp {
            cause: frame.get("Cause").and_then(|c| c.trim().parse().ok()),
        },
        _ => return Err(Skip::Ignored),
    };
    let channel = frame.get("Uniqueid").ok_or(Skip::Malformed("Uniqueid"))?;
    // Linkedid exists since Asterisk 1.8; without it the channel is its own call.
    let call = frame
        .get("Linkedid")
        .filter(|l| !l.is_empty())
        .unwrap_or(channel);
    Ok(PbxEvent {
        at,
        call: call.to_string(),
        channel: ChannelId(channel.to_string()),
        kind,
    })
}

/// AMI writes `<unknown>` for an absent caller id, and a dialed leg's CallerIDNum is
/// often just `s` (the start extension).
fn known(value: Option<&str>) -> Option<String> {
    let v = value?.trim();
    if v.is_empty() || v == "<unknown>" || v == "s" {
        None
    } else {
        Some(v.to_string())
    }
}

/// The device or extension behind a channel name:
/// `IAX2/101-13051` → `101`, `PJSIP/101-0000000a` → `101`, `SIP/trunk-00000001` → `trunk`,
/// `Local/101@phones-00000001;1` → `101`. Channel names end in `-<sequence>` (and `;1`/`;2`
/// for Local halves); what stands between the technology and that suffix is the
/// endpoint, and for Local channels the part before `@context` is the dialed extension.
pub fn endpoint_of_channel(channel: &str) -> Option<String> {
    let (tech, rest) = channel.split_once('/')?;
    let rest = match rest.rsplit_once(';') {
        Some((head, half)) if half.chars().all(|c| c.is_ascii_digit()) => head,
        _ => rest,
    };
    let resource = match rest.rsplit_once('-') {
        Some((head, _seq)) if !head.is_empty() => head,
        _ => rest,
    };
    let resource = if tech.eq_ignore_ascii_case("Local") {
        resource.split('@').next().unwrap_or(resource)
    } else {
        resource
    };
    if resource.is_empty() {
        None
    } else {
        Some(resource.to_string())
    }
}

fn dial_outcome(status: &str) -> DialOutcome {
    match status.trim() {
        "ANSWER" => DialOutcome::Answered,
        "BUSY" => DialOutcome::Busy,
        "NOANSWER" => DialOutcome::NoAnswer,
        "CANCEL" => DialOutcome::Cancelled,
        "CONGESTION" | "CHANUNAVAIL" | "DONTCALL" | "TORTURE" | "INVALIDARGS" => {
            DialOutcome::Failed
        }
        _ => DialOutcome::Other,
    }
}

#[cfg(test)]
mod tests {
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
        assert_eq!(ev.kind, PbxEventKind::HungUp { cause: Some(19) });
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
    fn dial_statuses() {
        assert_eq!(dial_outcome("ANSWER"), DialOutcome::Answered);
        assert_eq!(dial_outcome("CANCEL"), DialOutcome::Cancelled);
        assert_eq!(dial_outcome("NOANSWER"), DialOutcome::NoAnswer);
        assert_eq!(dial_outcome("BUSY"), DialOutcome::Busy);
        assert_eq!(dial_outcome("CHANUNAVAIL"), DialOutcome::Failed);
        assert_eq!(dial_outcome("GOTO"), DialOutcome::Other);
    }
}
