//! `callbridge replay FILE`: runs a recorded AMI or ESL byte stream through the pure middle
//! (codec, normalize, tracker, action rules) and prints every call step and the CRM
//! actions it would cause. No sockets, no store, no CRM: a tool to see what callbridge
//! makes of a PBX's events, e.g. a capture an administrator sends in.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context;
use bytes::BytesMut;
use tokio_util::codec::Decoder;

use crate::actions::{actions_for, CrmAction, Moment};
use crate::call::{CallStage, CallTracker, CallUpdate, InternalExtensions, TrackerConfig};
use crate::pbx::ami::normalize::{normalize_with, Skip};
use crate::pbx::ami::{AmiCodec, AmiItem};
use crate::time::Timestamp;

/// Everything the replay found, in order.
pub struct ReplayReport {
    pub frames: usize,
    pub events: usize,
    pub malformed: usize,
    pub updates: Vec<CallUpdate>,
}

/// Replays a recorded stream, AMI or FreeSWITCH ESL (told apart by their first bytes).
pub fn replay_any(bytes: &[u8], pbx: &str, extensions: &[String]) -> ReplayReport {
    if is_esl(bytes) {
        replay_esl_bytes(bytes, pbx, extensions)
    } else {
        replay_bytes(bytes, pbx, extensions)
    }
}

/// An ESL stream begins with a header block (`Content-Type: …` or `Content-Length: …`);
/// an AMI one with Asterisk's greeting line or `Event:` frames.
pub fn is_esl(bytes: &[u8]) -> bool {
    bytes.starts_with(b"Content-Type:") || bytes.starts_with(b"Content-Length:")
}

/// Replays FreeSWITCH Event Socket bytes (`event plain`, as recorded from a socket).
pub fn replay_esl_bytes(bytes: &[u8], pbx: &str, extensions: &[String]) -> ReplayReport {
    use crate::pbx::esl::{EslCodec, EslItem, EslNormalizer, PlainEvent};
    let mut codec = EslCodec::new();
    let mut buf = BytesMut::from(bytes);
    let mut normalizer = EslNormalizer::new();
    let mut tracker = CallTracker::new(TrackerConfig {
        pbx: pbx.to_string(),
        internal: InternalExtensions::new(extensions.iter().cloned()),
        trunk_contexts: Vec::new(),
        campaign_variables: crate::call::CampaignVariables::default(),
    });
    let mut report = ReplayReport {
        frames: 0,
        events: 0,
        malformed: 0,
        updates: Vec::new(),
    };
    let mut events = Vec::new();
    while let Ok(Some(item)) = codec.decode(&mut buf) {
        let EslItem::Message(message) = item else {
            report.malformed += 1;
            continue;
        };
        if message.content_type() != Some("text/event-plain") {
            continue;
        }
        report.frames += 1;
        let event = PlainEvent::parse(&message.body);
        match normalizer.normalize(&event, Timestamp::default(), &mut events) {
            Ok(()) => {}
            Err(crate::pbx::esl::normalize::Skip::Malformed(_)) => report.malformed += 1,
            Err(_) => {}
        }
        for ev in events.drain(..) {
            report.events += 1;
            report.updates.extend(tracker.apply(&ev));
        }
    }
    report
}

/// Replays AMI bytes (starting with the greeting line, as recorded from a socket).
pub fn replay_bytes(bytes: &[u8], pbx: &str, extensions: &[String]) -> ReplayReport {
    let mut codec = AmiCodec::new();
    let mut buf = BytesMut::from(bytes);
    let campaign = crate::call::CampaignVariables::default();
    let tracker_campaign_names = campaign.names();
    let mut tracker = CallTracker::new(TrackerConfig {
        pbx: pbx.to_string(),
        internal: InternalExtensions::new(extensions.iter().cloned()),
        trunk_contexts: Vec::new(),
        campaign_variables: campaign.clone(),
    });
    let mut report = ReplayReport {
        frames: 0,
        events: 0,
        malformed: 0,
        updates: Vec::new(),
    };
    let next = |codec: &mut AmiCodec, buf: &mut BytesMut| match codec.decode(buf) {
        Ok(Some(item)) => Some(item),
        _ => codec.decode_eof(buf).ok().flatten(),
    };
    while let Some(item) = next(&mut codec, &mut buf) {
        let AmiItem::Frame(frame) = item else {
            continue;
        };
        report.frames += 1;
        match normalize_with(&frame, Timestamp::default(), &tracker_campaign_names) {
            Ok(ev) => {
                report.events += 1;
                report.updates.extend(tracker.apply(&ev));
            }
            Err(Skip::Malformed(_)) => report.malformed += 1,
            Err(_) => {}
        }
    }
    report
}

pub fn run(path: &Path, pbx: &str, extensions: &[String]) -> anyhow::Result<()> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let report = replay_any(&bytes, pbx, extensions);
    println!(
        "{}: {} frames, {} call events, {} malformed",
        path.display(),
        report.frames,
        report.events,
        report.malformed
    );
    let mut order: Vec<String> = Vec::new();
    let mut by_call: BTreeMap<String, Vec<&CallUpdate>> = BTreeMap::new();
    for u in &report.updates {
        if !by_call.contains_key(&u.header.call_id) {
            order.push(u.header.call_id.clone());
        }
        by_call.entry(u.header.call_id.clone()).or_default().push(u);
    }
    for call_id in order {
        let updates = &by_call[&call_id];
        let h = &updates[updates.len() - 1].header;
        println!();
        println!(
            "call {}  {}  customer {}  did {}",
            h.external_id(),
            h.direction.as_str(),
            h.customer_number.as_deref().unwrap_or("?"),
            h.did.as_deref().unwrap_or("-")
        );
        for u in updates {
            let stage = match &u.stage {
                CallStage::Ringing { new, .. } => format!("ringing {}", new.join(",")),
                CallStage::Answered { extension } => format!("answered by {extension}"),
                CallStage::Ended(s) => format!(
                    "ended {} employee {} rang [{}] talk {} s wait {} s talkers [{}]{}{}{}",
                    s.outcome.as_str(),
                    s.employee.as_deref().unwrap_or("-"),
                    s.rang.join(","),
                    s.talk_secs,
                    s.wait_secs,
                    s.talkers
                        .iter()
                        .map(|t| format!("{} {} s", t.extension, t.talk_secs))
                        .collect::<Vec<_>>()
                        .join(", "),
                    s.recording
                        .as_ref()
                        .map(|r| format!(" recording {r}"))
                        .unwrap_or_default(),
                    s.voicemail
                        .as_ref()
                        .map(|v| format!(
                            " voicemail {} {}",
                            v.mailbox,
                            v.message.as_deref().unwrap_or("(no message yet)")
                        ))
                        .unwrap_or_default(),
                    if s.reconstructed {
                        " (reconstructed)"
                    } else {
                        ""
                    },
                ),
            };
            println!("  {}  {stage}", u.at);
            if let Ok(actions) = actions_for(u) {
                for a in actions {
                    let what = match &a {
                        CrmAction::Decide(d) => match &d.moment {
                            Moment::Ringing { .. } => "the matrix decides the ringing (pop-ups)",
                            Moment::Answered { .. } => "the matrix decides the answer",
                            Moment::Ended { .. } => "the matrix decides the end (tasks, history)",
                        },
                        other => other.kind(),
                    };
                    println!("      -> {what}");
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replays_a_recorded_ring_group_call() {
        let report = replay_bytes(
            include_bytes!("../../tests/fixtures/asterisk/iax2/ring_group_second_answers.ami"),
            "office",
            &[],
        );
        assert_eq!(report.malformed, 0);
        let stages: Vec<&CallStage> = report.updates.iter().map(|u| &u.stage).collect();
        assert!(
            matches!(stages.last(), Some(CallStage::Ended(s)) if s.employee.as_deref() == Some("102")
            && s.rang == ["101", "102"])
        );
    }
}
