//! `CallTracker`: the per-call state machine. Pure: `PbxEvent`s in, `CallUpdate`s out.
//!
//! Channels are grouped into calls by the PBX's call id (Asterisk `Linkedid`). A call
//! starts with its first channel (the origin: the trunk leg of an inbound call, the
//! phone of an outbound one), rings employees through dial attempts, is answered when a
//! dial attempt to an employee ends in ANSWER, and ends when its last channel hangs up.
//! Outcomes come from the dial results, not from hang-up causes (ring-out legs hang up
//! with cause 0, ring-group losers with 26; see tests/fixtures/asterisk/README.md).

use std::collections::{HashMap, HashSet, VecDeque};

use crate::call::{
    CallHeader, CallStage, CallSummary, CallUpdate, Direction, InternalExtensions, Outcome,
};
use crate::pbx::event::{ChannelId, DialOutcome, PbxEvent, PbxEventKind};
use crate::time::Timestamp;

#[derive(Debug, Clone)]
pub struct TrackerConfig {
    /// The PBX's name from the configuration; part of every call's identity.
    pub pbx: String,
    pub internal: InternalExtensions,
}

/// How many ended call ids are remembered, so that a stray event arriving after a
/// call's last hang-up does not open a phantom call that never ends.
const ENDED_MEMORY: usize = 4096;

#[derive(Debug)]
pub struct CallTracker {
    config: TrackerConfig,
    calls: HashMap<String, LiveCall>,
    /// Which call each live channel belongs to.
    channels: HashMap<ChannelId, String>,
    ended: VecDeque<String>,
    ended_set: HashSet<String>,
}

#[derive(Debug)]
struct LiveCall {
    started_at: Timestamp,
    origin: ChannelId,
    origin_endpoint: Option<String>,
    /// The number the origin channel was called on (DID inbound, dialed number outbound).
    origin_exten: Option<String>,
    caller_number: Option<String>,
    direction: Option<Direction>,
    dialed_number: Option<String>,
    live: HashSet<ChannelId>,
    legs: Vec<DialLeg>,
    announced: Vec<String>,
    answer: Option<Answer>,
    talk_end: Option<Timestamp>,
}

#[derive(Debug)]
struct DialLeg {
    channel: ChannelId,
    endpoint: Option<String>,
    internal: bool,
    result: Option<DialOutcome>,
}

#[derive(Debug, Clone)]
struct Answer {
    extension: String,
    /// The channels whose hang-up ends the talk: the answering leg and the origin.
    talkers: [ChannelId; 2],
    at: Timestamp,
}

impl CallTracker {
    pub fn new(config: TrackerConfig) -> Self {
        CallTracker {
            config,
            calls: HashMap::new(),
            channels: HashMap::new(),
            ended: VecDeque::new(),
            ended_set: HashSet::new(),
        }
    }

    /// Calls in progress.
    pub fn live_calls(&self) -> usize {
        self.calls.len()
    }

    /// Feeds one event; returns what changed for the call it belongs to.
    pub fn apply(&mut self, ev: &PbxEvent) -> Vec<CallUpdate> {
        if self.ended_set.contains(&ev.call) {
            return Vec::new();
        }
        let mut updates: Vec<CallStage> = Vec::new();
        let Some(call_id) = self.adopt(ev) else {
            return Vec::new();
        };
        let internal = &self.config.internal;
        let Some(call) = self.calls.get_mut(&call_id) else {
            return Vec::new();
        };
        match &ev.kind {
            PbxEventKind::ChannelCreated {
                endpoint,
                caller_number,
                exten,
                ..
            } => {
                if ev.channel == call.origin {
                    call.origin_endpoint = endpoint.clone();
                    call.origin_exten = exten.clone();
                    if call.caller_number.is_none() {
                        call.caller_number = caller_number.clone();
                    }
                }
            }
            PbxEventKind::CallerKnown { caller_number } => {
                if ev.channel == call.origin && call.caller_number.is_none() {
                    call.caller_number = Some(caller_number.clone());
                }
            }
            PbxEventKind::DialBegin {
                caller_number,
                dest,
                dest_endpoint,
                dial_string,
                ..
            } => {
                if call.caller_number.is_none() && call.direction != Some(Direction::Outbound) {
                    call.caller_number = caller_number.clone();
                }
                let dest_internal = dest_endpoint
                    .as_deref()
                    .is_some_and(|e| internal.contains(e));
                if call.direction.is_none() {
                    let origin_internal = call
                        .origin_endpoint
                        .as_deref()
                        .is_some_and(|e| internal.contains(e));
                    call.direction = Some(match (origin_internal, dest_internal) {
                        (false, _) => Direction::Inbound,
                        (true, true) => Direction::Internal,
                        (true, false) => Direction::Outbound,
                    });
                    if call.direction == Some(Direction::Outbound) {
                        call.dialed_number = call
                            .origin_exten
                            .clone()
                            .or_else(|| dial_string.as_deref().and_then(number_of_dial_string));
                    }
                }
                self.channels.insert(dest.clone(), call_id.clone());
                call.live.insert(dest.clone());
                call.legs.push(DialLeg {
                    channel: dest.clone(),
                    endpoint: dest_endpoint.clone(),
                    internal: dest_internal,
                    result: None,
                });
                if call.direction == Some(Direction::Inbound) && call.answer.is_none() {
                    if let Some(ext) = dest_endpoint.as_ref().filter(|_| dest_internal) {
                        if !call.announced.contains(ext) {
                            call.announced.push(ext.clone());
                            updates.push(CallStage::Ringing {
                                extensions: call.announced.clone(),
                                new: vec![ext.clone()],
                            });
                        }
                    }
                }
            }
            PbxEventKind::DialEnd { dest, outcome, .. } => {
                // app_queue sends duplicate DialEnds (NOANSWER then CANCEL): the first
                // result of a leg stands.
                let Some(leg) = call
                    .legs
                    .iter_mut()
                    .rev()
                    .find(|l| &l.channel == dest && l.result.is_none())
                else {
                    return Vec::new();
                };
                leg.result = Some(*outcome);
                if *outcome == DialOutcome::Answered && call.answer.is_none() {
                    let extension = match call.direction {
                        Some(Direction::Outbound) => call.origin_endpoint.clone(),
                        _ if leg.internal => leg.endpoint.clone(),
                        _ => None,
                    };
                    if let Some(extension) = extension {
                        call.answer = Some(Answer {
                            extension: extension.clone(),
                            talkers: [dest.clone(), call.origin.clone()],
                            at: ev.at,
                        });
                        updates.push(CallStage::Answered { extension });
                    }
                }
            }
            PbxEventKind::HungUp { .. } => {
                call.live.remove(&ev.channel);
                self.channels.remove(&ev.channel);
                if let Some(answer) = &call.answer {
                    if call.talk_end.is_none() && answer.talkers.contains(&ev.channel) {
                        call.talk_end = Some(ev.at);
                    }
                }
            }
        }
        let header = self.header(&call_id);
        let mut out: Vec<CallUpdate> = updates
            .into_iter()
            .map(|stage| CallUpdate {
                header: header.clone(),
                at: ev.at,
                stage,
            })
            .collect();
        if self.calls.get(&call_id).is_some_and(|c| c.live.is_empty()) {
            if let Some(done) = self.finish(&call_id, ev.at) {
                out.push(done);
            }
        }
        out
    }

    /// Finds or opens the call of the event's channel. A hang-up of a channel we never
    /// saw opens nothing: there is nothing to report about a call seen only ending.
    fn adopt(&mut self, ev: &PbxEvent) -> Option<String> {
        if let Some(call_id) = self.channels.get(&ev.channel) {
            return Some(call_id.clone());
        }
        if matches!(ev.kind, PbxEventKind::HungUp { .. }) && !self.calls.contains_key(&ev.call) {
            return None;
        }
        let call = self
            .calls
            .entry(ev.call.clone())
            .or_insert_with(|| LiveCall {
                started_at: ev.at,
                origin: ev.channel.clone(),
                origin_endpoint: None,
                origin_exten: None,
                caller_number: None,
                direction: None,
                dialed_number: None,
                live: HashSet::new(),
                legs: Vec::new(),
                announced: Vec::new(),
                answer: None,
                talk_end: None,
            });
        if !matches!(ev.kind, PbxEventKind::HungUp { .. }) {
            call.live.insert(ev.channel.clone());
            self.channels.insert(ev.channel.clone(), ev.call.clone());
        }
        Some(ev.call.clone())
    }

    fn header(&self, call_id: &str) -> CallHeader {
        let call = self.calls.get(call_id);
        let direction = call
            .map(|c| self.direction_of(c))
            .unwrap_or(Direction::Inbound);
        CallHeader {
            pbx: self.config.pbx.clone(),
            call_id: call_id.to_string(),
            direction,
            customer_number: call.and_then(|c| match direction {
                Direction::Outbound => c.dialed_number.clone(),
                _ => c.caller_number.clone(),
            }),
            did: call
                .filter(|_| direction == Direction::Inbound)
                .and_then(|c| c.origin_exten.clone()),
            started_at: call.map(|c| c.started_at).unwrap_or_default(),
        }
    }

    /// A call that never dialed anyone is inbound when it came from outside.
    fn direction_of(&self, call: &LiveCall) -> Direction {
        call.direction
            .unwrap_or_else(|| match call.origin_endpoint.as_deref() {
                Some(e) if self.config.internal.contains(e) => Direction::Internal,
                _ => Direction::Inbound,
            })
    }

    fn finish(&mut self, call_id: &str, at: Timestamp) -> Option<CallUpdate> {
        let header = self.header(call_id);
        let call = self.calls.remove(call_id)?;
        for leg in &call.legs {
            self.channels.remove(&leg.channel);
        }
        self.channels.remove(&call.origin);
        self.ended.push_back(call_id.to_string());
        self.ended_set.insert(call_id.to_string());
        while self.ended.len() > ENDED_MEMORY {
            if let Some(old) = self.ended.pop_front() {
                self.ended_set.remove(&old);
            }
        }

        let results: Vec<DialOutcome> = call
            .legs
            .iter()
            .filter(|l| l.internal || header.direction == Direction::Outbound)
            .filter_map(|l| l.result)
            .collect();
        let outcome = if call.answer.is_some() {
            Outcome::Answered
        } else if !results.is_empty() && results.iter().all(|r| *r == DialOutcome::Busy) {
            Outcome::Busy
        } else if !results.is_empty() && results.iter().all(|r| *r == DialOutcome::Failed) {
            Outcome::Failed
        } else {
            Outcome::Missed
        };
        let employee = match header.direction {
            Direction::Outbound | Direction::Internal => call.origin_endpoint.clone(),
            Direction::Inbound => call.answer.as_ref().map(|a| a.extension.clone()),
        };
        let answered_at = call.answer.as_ref().map(|a| a.at);
        let talk_secs = match (&call.answer, call.talk_end) {
            (Some(a), Some(end)) => end.secs_since(a.at),
            (Some(a), None) => at.secs_since(a.at),
            _ => 0,
        };
        Some(CallUpdate {
            at,
            stage: CallStage::Ended(CallSummary {
                outcome,
                rang: call.announced.clone(),
                employee,
                answered_at,
                ended_at: at,
                duration_secs: at.secs_since(call.started_at),
                talk_secs,
                wait_secs: answered_at.unwrap_or(at).secs_since(call.started_at),
                header: header.clone(),
            }),
            header,
        })
    }
}

/// `trunk/89031112233` → `89031112233`; `PJSIP/89031112233@provider` → `89031112233`.
fn number_of_dial_string(dial: &str) -> Option<String> {
    let tail = dial.rsplit('/').next()?;
    let number = tail.split('@').next()?;
    (!number.is_empty()).then(|| number.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pbx::ami::{normalize::normalize, AmiCodec, AmiItem};
    use bytes::BytesMut;
    use tokio_util::codec::Decoder;

    fn tracker() -> CallTracker {
        CallTracker::new(TrackerConfig {
            pbx: "office".into(),
            internal: InternalExtensions::new(["101".to_string(), "102".to_string()]),
        })
    }

    /// Plays a recorded AMI transcript through codec, normalize and tracker.
    fn play(bytes: &[u8]) -> Vec<CallUpdate> {
        let mut codec = AmiCodec::new();
        let mut buf = BytesMut::from(bytes);
        let mut t = tracker();
        let mut out = Vec::new();
        while let Ok(Some(item)) = codec.decode(&mut buf) {
            if let AmiItem::Frame(frame) = item {
                if let Ok(ev) = normalize(&frame, Timestamp(0)) {
                    out.extend(t.apply(&ev));
                }
            }
        }
        assert_eq!(t.live_calls(), 0, "every recorded call ends");
        out
    }

    fn ended(updates: &[CallUpdate]) -> Vec<&CallSummary> {
        updates
            .iter()
            .filter_map(|u| match &u.stage {
                CallStage::Ended(s) => Some(s),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn inbound_answered_rings_answers_and_ends() {
        let ups = play(include_bytes!(
            "../../tests/fixtures/asterisk/iax2/inbound_answered.ami"
        ));
        let stages: Vec<&CallStage> = ups.iter().map(|u| &u.stage).collect();
        assert_eq!(
            stages[0],
            &CallStage::Ringing {
                extensions: vec!["101".into()],
                new: vec!["101".into()]
            }
        );
        assert_eq!(
            stages[1],
            &CallStage::Answered {
                extension: "101".into()
            }
        );
        let done = ended(&ups);
        assert_eq!(done.len(), 1);
        let s = done[0];
        assert_eq!(s.header.direction, Direction::Inbound);
        assert_eq!(s.header.customer_number.as_deref(), Some("+79161234567"));
        assert_eq!(s.header.did.as_deref(), Some("74951234567"));
        assert_eq!(s.header.call_id, "1795627488.2");
        assert_eq!(s.outcome, Outcome::Answered);
        assert_eq!(s.employee.as_deref(), Some("101"));
        assert_eq!(s.talk_secs, 6, "README: talked 6 s");
        assert_eq!(s.wait_secs, 3, "README: rang 3 s");
    }

    #[test]
    fn inbound_missed_is_missed_with_the_rung_extension() {
        let ups = play(include_bytes!(
            "../../tests/fixtures/asterisk/iax2/inbound_missed.ami"
        ));
        let done = ended(&ups);
        assert_eq!(done.len(), 1);
        let s = done[0];
        assert_eq!(s.outcome, Outcome::Missed);
        assert_eq!(s.rang, vec!["101".to_string()]);
        assert_eq!(s.employee, None);
        assert_eq!(s.header.customer_number.as_deref(), Some("+79035556677"));
        assert_eq!(s.talk_secs, 0);
        assert!(!ups
            .iter()
            .any(|u| matches!(u.stage, CallStage::Answered { .. })));
    }

    #[test]
    fn local_channels_answered_by_101() {
        let ups = play(include_bytes!(
            "../../tests/fixtures/asterisk/local/inbound_answered.ami"
        ));
        let done = ended(&ups);
        assert_eq!(done.len(), 1);
        let s = done[0];
        assert_eq!(s.outcome, Outcome::Answered);
        assert_eq!(s.employee.as_deref(), Some("101"));
        assert_eq!(s.header.customer_number.as_deref(), Some("+79161234567"));
        assert_eq!(s.header.did.as_deref(), Some("74951234567"));
        assert_eq!(s.talk_secs, 6);
    }

    #[test]
    fn outbound_answered_is_outbound_to_the_dialed_number() {
        let ups = play(include_bytes!(
            "../../tests/fixtures/asterisk/iax2/outbound_answered.ami"
        ));
        assert!(!ups
            .iter()
            .any(|u| matches!(u.stage, CallStage::Ringing { .. })));
        let s = ended(&ups)[0];
        assert_eq!(s.header.direction, Direction::Outbound);
        assert_eq!(s.header.customer_number.as_deref(), Some("89031112233"));
        assert_eq!(s.header.did, None);
        assert_eq!(s.outcome, Outcome::Answered);
        assert_eq!(s.employee.as_deref(), Some("101"));
        assert_eq!(s.talk_secs, 6);
    }

    #[test]
    fn outbound_no_answer_is_missed() {
        let ups = play(include_bytes!(
            "../../tests/fixtures/asterisk/iax2/outbound_no_answer.ami"
        ));
        let s = ended(&ups)[0];
        assert_eq!(s.header.direction, Direction::Outbound);
        assert_eq!(s.outcome, Outcome::Missed);
        assert_eq!(s.employee.as_deref(), Some("101"));
    }

    #[test]
    fn stray_event_after_the_end_opens_no_call() {
        let mut t = tracker();
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
        let ups = t.apply(&ev(PbxEventKind::HungUp { cause: Some(16) }, "9.1"));
        assert_eq!(ended(&ups).len(), 1);
        let ups = t.apply(&ev(
            PbxEventKind::CallerKnown {
                caller_number: "+7".into(),
            },
            "9.1",
        ));
        assert!(ups.is_empty());
        assert_eq!(t.live_calls(), 0);
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
    }
}
