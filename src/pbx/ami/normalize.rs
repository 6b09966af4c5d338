//! AMI frames → `PbxEvent`s. Pure: a frame and the moment it was read go in, at most one
//! event comes out. Everything Asterisk-specific about reading channels (channel-name
//! formats, `<unknown>` caller ids, DialStatus words) stays in this file.

use crate::pbx::ami::frame::AmiFrame;
use crate::pbx::event::{ChannelId, DialOutcome, Id, LiveChannel, PbxEvent, PbxEventKind, SeenAs};
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
///
/// Hot path (every AMI event passes here): the event name is read first (`Event` is
/// normally the first header) and events the tracker does not need are dropped before
/// anything else is read. A kept event's fields, together with the ids and time every
/// event carries ([`COMMON`]), are then read in one pass over its headers
/// ([`AmiFrame::get_many`]). VarSet and Newexten, the most frequent events, are mostly
/// dropped by fields at their end (`Variable`, `Application`), read from the end.
pub fn normalize(frame: &AmiFrame, received_at: Timestamp) -> Result<PbxEvent, Skip> {
    normalize_with(frame, received_at, &[])
}

/// [`normalize`], also keeping `VarSet`s of the variables named in `also` (the
/// configured campaign variables).
pub fn normalize_with(
    frame: &AmiFrame,
    received_at: Timestamp,
    also: &[&str],
) -> Result<PbxEvent, Skip> {
    let name = frame.event().ok_or(Skip::NotAnEvent)?;
    let f = frame;
    let (kind, common) = match name {
        "Newchannel" => {
            let [channel, number, caller_name, exten, context, uniqueid, linkedid, timestamp] = f
                .get_many([
                    "Channel",
                    "CallerIDNum",
                    "CallerIDName",
                    "Exten",
                    "Context",
                    UNIQUEID,
                    LINKEDID,
                    TIMESTAMP,
                ]);
            let kind = PbxEventKind::ChannelCreated {
                name: channel.unwrap_or_default().into(),
                endpoint: channel.and_then(endpoint_of_channel),
                caller_number: known(number),
                caller_name: known(caller_name),
                exten: known(exten),
                context: known(context),
            };
            (kind, [uniqueid, linkedid, timestamp])
        }
        "Newstate" | "NewCallerid" => {
            let [number, uniqueid, linkedid, timestamp] =
                f.get_many(["CallerIDNum", UNIQUEID, LINKEDID, TIMESTAMP]);
            match known(number) {
                Some(caller_number) => (
                    PbxEventKind::CallerKnown { caller_number },
                    [uniqueid, linkedid, timestamp],
                ),
                None => return Err(Skip::Ignored),
            }
        }
        "DialBegin" => {
            let [channel, dest_name, number, exten, context, dest, dial_string, uniqueid, linkedid, timestamp] =
                f.get_many([
                    "Channel",
                    "DestChannel",
                    "CallerIDNum",
                    "Exten",
                    "Context",
                    "DestUniqueid",
                    "DialString",
                    UNIQUEID,
                    LINKEDID,
                    TIMESTAMP,
                ]);
            // A DialBegin without a caller block comes from Originate: the PBX itself
            // placed the destination channel (its own Newchannel came before).
            if channel.is_none() {
                let [dest_linkedid] = f.get_many(["DestLinkedid"]);
                return finish(
                    [dest, dest_linkedid, timestamp],
                    received_at,
                    PbxEventKind::Originated,
                );
            }
            let dest_name = dest_name.ok_or(Skip::Malformed("DestChannel"))?;
            let kind = PbxEventKind::DialBegin {
                caller_number: known(number),
                dialer: Box::new(SeenAs {
                    name: channel.unwrap_or_default().into(),
                    endpoint: channel.and_then(endpoint_of_channel),
                    caller_number: known(number),
                    exten: known(exten),
                    context: known(context),
                }),
                dest: ChannelId(dest.ok_or(Skip::Malformed("DestUniqueid"))?.into()),
                dest_name: dest_name.into(),
                dest_endpoint: endpoint_of_channel(dest_name),
                dial_string: known(dial_string),
            };
            (kind, [uniqueid, linkedid, timestamp])
        }
        "DialEnd" => {
            let [channel, dest, dest_name, status, uniqueid, linkedid, timestamp] = f.get_many([
                "Channel",
                "DestUniqueid",
                "DestChannel",
                "DialStatus",
                UNIQUEID,
                LINKEDID,
                TIMESTAMP,
            ]);
            if channel.is_none() {
                return Err(Skip::Ignored);
            }
            let kind = PbxEventKind::DialEnd {
                dest: ChannelId(dest.ok_or(Skip::Malformed("DestUniqueid"))?.into()),
                dest_endpoint: dest_name.and_then(endpoint_of_channel),
                outcome: dial_outcome(status.unwrap_or_default()),
            };
            (kind, [uniqueid, linkedid, timestamp])
        }
        "Hangup" => {
            let [cause, channel, number, exten, context, uniqueid, linkedid, timestamp] = f
                .get_many([
                    "Cause",
                    "Channel",
                    "CallerIDNum",
                    "Exten",
                    "Context",
                    UNIQUEID,
                    LINKEDID,
                    TIMESTAMP,
                ]);
            let kind = PbxEventKind::HungUp {
                cause: cause.and_then(|c| c.trim().parse().ok()),
                seen_as: Box::new(SeenAs {
                    name: channel.unwrap_or_default().into(),
                    endpoint: channel.and_then(endpoint_of_channel),
                    caller_number: known(number),
                    exten: known(exten),
                    context: known(context),
                }),
            };
            (kind, [uniqueid, linkedid, timestamp])
        }
        "BridgeEnter" | "BridgeLeave" => {
            let [bridge, uniqueid, linkedid, timestamp] =
                f.get_many(["BridgeUniqueid", UNIQUEID, LINKEDID, TIMESTAMP]);
            let bridge = Id::from(bridge.ok_or(Skip::Malformed("BridgeUniqueid"))?);
            let kind = if name == "BridgeEnter" {
                PbxEventKind::Bridged { bridge }
            } else {
                PbxEventKind::Unbridged { bridge }
            };
            (kind, [uniqueid, linkedid, timestamp])
        }
        "AgentCalled" | "AgentConnect" => {
            let [queue, dest, interface, dest_name, uniqueid, linkedid, timestamp] = f.get_many([
                "Queue",
                "DestUniqueid",
                "Interface",
                "DestChannel",
                UNIQUEID,
                LINKEDID,
                TIMESTAMP,
            ]);
            let queue = Id::from(queue.unwrap_or_default());
            let dest = dest.map(|u| ChannelId(u.into()));
            let endpoint = interface
                .and_then(endpoint_of_interface)
                .or_else(|| dest_name.and_then(endpoint_of_channel));
            let kind = if name == "AgentCalled" {
                PbxEventKind::QueueAgentRinging {
                    queue,
                    dest,
                    endpoint,
                }
            } else {
                PbxEventKind::QueueAgentConnected {
                    queue,
                    dest,
                    endpoint,
                }
            };
            (kind, [uniqueid, linkedid, timestamp])
        }
        "QueueCallerAbandon" => {
            let [queue, uniqueid, linkedid, timestamp] =
                f.get_many(["Queue", UNIQUEID, LINKEDID, TIMESTAMP]);
            let kind = PbxEventKind::QueueAbandoned {
                queue: queue.unwrap_or_default().into(),
            };
            (kind, [uniqueid, linkedid, timestamp])
        }
        "Newexten" => {
            // Newexten is one of the most frequent events; only VoiceMail() matters.
            // `Application` comes after the channel snapshot: read from the end (an event
            // has it once).
            if !f
                .get_last("Application")
                .is_some_and(|a| a.eq_ignore_ascii_case("VoiceMail"))
            {
                return Err(Skip::Ignored);
            }
            let data = f.get_last("AppData").unwrap_or_default();
            // `102@default,u` or `101&102,s`: the first mailbox is the one we report.
            let first = data.split([',', '&']).next().unwrap_or_default().trim();
            if first.is_empty() {
                return Err(Skip::Malformed("AppData"));
            }
            let mailbox = if first.contains('@') {
                Id::from(first)
            } else {
                compact_str::format_compact!("{first}@default")
            };
            (
                PbxEventKind::VoicemailStarted { mailbox },
                f.get_many(COMMON),
            )
        }
        "VarSet" => {
            let variable = f.get_last("Variable").unwrap_or_default();
            if !VARIABLES.contains(&variable) && !also.contains(&variable) {
                return Err(Skip::Ignored);
            }
            let value = f.get_last("Value").unwrap_or_default();
            let kind = if variable == "DIALSTATUS" {
                PbxEventKind::DialResult {
                    outcome: dial_outcome(value),
                }
            } else {
                PbxEventKind::Variable {
                    name: variable.into(),
                    value: value.into(),
                }
            };
            (kind, f.get_many(COMMON))
        }
        _ => return Err(Skip::Ignored),
    };
    finish(common, received_at, kind)
}

/// The headers every event has: channel, call and time (read with the event's own fields).
const UNIQUEID: &str = "Uniqueid";
const LINKEDID: &str = "Linkedid";
const TIMESTAMP: &str = "Timestamp";
const COMMON: [&str; 3] = [UNIQUEID, LINKEDID, TIMESTAMP];

/// The event from its kind and its [`COMMON`] headers (`Uniqueid`, `Linkedid`, `Timestamp`).
fn finish(
    [uniqueid, linkedid, timestamp]: [Option<&str>; 3],
    received_at: Timestamp,
    kind: PbxEventKind,
) -> Result<PbxEvent, Skip> {
    let channel = uniqueid.ok_or(Skip::Malformed("Uniqueid"))?;
    // Only events we keep pay for reading the time.
    let at = timestamp
        .and_then(Timestamp::parse_epoch)
        .unwrap_or(received_at);
    // Linkedid exists since Asterisk 1.8; without it the channel is its own call.
    let call = linkedid.filter(|l| !l.is_empty()).unwrap_or(channel);
    Ok(PbxEvent {
        at,
        call: call.into(),
        channel: ChannelId(channel.into()),
        kind,
    })
}

/// Channel variables the tracker uses: the dial result on the calling channel, the
/// recording's path, the saved voicemail message.
pub const VARIABLES: &[&str] = &[
    "DIALSTATUS",
    "MIXMONITOR_FILENAME",
    "VM_MESSAGEFILE",
    "VMSTATUS",
];

/// The extension of a queue member interface: `PJSIP/101`, `SIP/101`, `IAX2/101`,
/// `Local/101@from-queue/n` → `101`. Unlike channel names, interfaces carry no
/// `-<sequence>` suffix.
pub fn endpoint_of_interface(interface: &str) -> Option<Id> {
    let (tech, rest) = interface.split_once('/')?;
    let resource = if tech.eq_ignore_ascii_case("Local") {
        rest.split(['@', '/']).next().unwrap_or(rest)
    } else {
        rest.split('/').next().unwrap_or(rest)
    };
    (!resource.is_empty()).then(|| resource.into())
}

/// AMI writes `<unknown>` for an absent caller id, and a dialed leg's CallerIDNum is
/// often just `s` (the start extension).
fn known(value: Option<&str>) -> Option<Id> {
    let v = value?.trim();
    if v.is_empty() || v == "<unknown>" || v == "s" {
        None
    } else {
        Some(v.into())
    }
}

/// The device or extension behind a channel name:
/// `IAX2/101-13051` → `101`, `PJSIP/101-0000000a` → `101`, `SIP/trunk-00000001` → `trunk`,
/// `Local/101@phones-00000001;1` → `101`. Channel names end in `-<sequence>` (and `;1`/`;2`
/// for Local halves); what stands between the technology and that suffix is the
/// endpoint, and for Local channels the part before `@context` is the dialed extension.
pub fn endpoint_of_channel(channel: &str) -> Option<Id> {
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
        Some(resource.into())
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

/// One `CoreShowChannel` item (the answer to `CoreShowChannels`) as a `LiveChannel`.
pub fn live_channel(frame: &AmiFrame) -> Option<LiveChannel> {
    if frame.event() != Some("CoreShowChannel") {
        return None;
    }
    let uniqueid = frame.get("Uniqueid")?;
    let name = frame.get("Channel").unwrap_or_default();
    let state = frame.get("ChannelState").unwrap_or_default().trim();
    Some(LiveChannel {
        channel: ChannelId(uniqueid.into()),
        call: frame
            .get("Linkedid")
            .filter(|l| !l.is_empty())
            .unwrap_or(uniqueid)
            .into(),
        name: name.into(),
        endpoint: endpoint_of_channel(name),
        up: state == "6",
        ringing: state == "5",
        caller_number: known(frame.get("CallerIDNum")),
        exten: known(frame.get("Exten")),
        context: known(frame.get("Context")),
        bridge: frame
            .get("BridgeId")
            .filter(|b| !b.trim().is_empty())
            .map(Id::from),
        shows_bridge: true,
        dialed_by: None,
        hanging_up: false,
        duration_secs: frame.get("Duration").map(parse_hms).unwrap_or(0),
        application: known(frame.get("Application")).map(String::from),
        application_data: known(frame.get("ApplicationData")).map(String::from),
    })
}

/// `01:02:03` → 3723 seconds; plain seconds are accepted too.
fn parse_hms(text: &str) -> u32 {
    text.trim()
        .split(':')
        .try_fold(0u32, |acc, part| {
            part.parse::<u32>()
                .ok()
                .map(|n| acc.saturating_mul(60).saturating_add(n))
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests;
