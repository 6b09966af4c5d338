//! A call's end: its outcome (from dial results, queue events and voicemail, never
//! from hang-up causes), answerer, talkers and talk time, as a `CallSummary`.

use super::*;

impl CallTracker {
    pub(super) fn finish(&mut self, call_id: &str, at: Timestamp) -> Option<CallUpdate> {
        let header = self.header(call_id);
        let mut call = self.calls.remove(call_id)?;
        for member in std::mem::take(&mut call.members) {
            self.drop_channel(&member);
        }
        self.dirty.remove(call_id);
        self.ended.push_back(call_id.into());
        self.ended_set.insert(call_id.into());
        while self.ended.len() > ENDED_MEMORY {
            if let Some(old) = self.ended.pop_front() {
                self.ended_set.remove(&old);
            }
        }
        for seg in call.segments.iter_mut().filter(|s| s.to.is_none()) {
            seg.to = Some(at);
        }
        let outcome = outcome(&call, header.direction);
        let mut talkers: Vec<Talker> = Vec::new();
        for seg in &call.segments {
            let secs = seg.to.unwrap_or(at).0 - seg.from.0;
            match talkers.iter_mut().find(|t| t.extension == seg.extension) {
                Some(t) => t.talk_secs = t.talk_secs.saturating_add(round_secs(secs)),
                None => talkers.push(Talker {
                    extension: seg.extension.to_string(),
                    talk_secs: round_secs(secs),
                }),
            }
        }
        let last_talker = call
            .segments
            .iter()
            .max_by_key(|s| s.from)
            .map(|s| s.extension.to_string());
        let employee = match header.direction {
            // The extension the call went out from; an originate that names none is the
            // call of whoever talked.
            Direction::Outbound => origin_extension(&call, &self.config.internal)
                .map(|e| e.to_string())
                .or(last_talker),
            Direction::Internal => origin_extension(&call, &self.config.internal)
                .or(call.origin_endpoint.as_ref())
                .map(|e| e.to_string()),
            Direction::Inbound => {
                last_talker.or_else(|| call.answer.as_ref().map(|a| a.0.to_string()))
            }
        };
        let answered_at = call.answer.as_ref().map(|a| a.1);
        // Time the customer spent talking with anyone (overlaps counted once; hold
        // during a transfer is not talk).
        let mut spans: Vec<(i64, i64)> = call
            .segments
            .iter()
            .map(|s| (s.from.0, s.to.unwrap_or(at).0))
            .collect();
        spans.sort_unstable();
        let mut talk_micros = 0i64;
        let mut open: Option<(i64, i64)> = None;
        for (from, to) in spans {
            match open {
                Some((a, b)) if from <= b => open = Some((a, b.max(to))),
                Some((a, b)) => {
                    talk_micros += b - a;
                    open = Some((from, to));
                }
                None => open = Some((from, to)),
            }
        }
        if let Some((a, b)) = open {
            talk_micros += b - a;
        }
        let talk_secs = round_secs(talk_micros);
        let voicemail = if outcome == Outcome::Voicemail {
            call.voicemail.clone()
        } else {
            None
        };
        Some(CallUpdate {
            at,
            stage: CallStage::Ended(Box::new(CallSummary {
                outcome,
                rang: call.announced.clone(),
                employee,
                answered_at,
                ended_at: at,
                duration_secs: at.secs_since(call.started_at),
                talk_secs,
                wait_secs: answered_at.unwrap_or(at).secs_since(call.started_at),
                talkers,
                recording: call.recording.clone(),
                voicemail,
                queue: call.queue.as_ref().map(|q| q.to_string()),
                channels: call.seen.iter().map(|c| c.to_string()).collect(),
                reconstructed: call.reconstructed,
                header: header.clone(),
            })),
            header,
        })
    }
}

pub(super) fn round_secs(micros: i64) -> u32 {
    ((micros.max(0) + 500_000) / 1_000_000).min(i64::from(u32::MAX)) as u32
}

pub(super) fn outcome(call: &LiveCall, direction: Direction) -> Outcome {
    if !call.segments.is_empty() || call.answer.is_some() {
        return Outcome::Answered;
    }
    if direction == Direction::Internal
        && call
            .legs
            .iter()
            .any(|l| l.internal && l.result == Some(DialOutcome::Answered))
    {
        return Outcome::Answered;
    }
    if direction == Direction::Inbound && call.voicemail.is_some() {
        return Outcome::Voicemail;
    }
    let want_internal = direction != Direction::Outbound;
    let mut results: Vec<DialOutcome> = call
        .legs
        .iter()
        .filter(|l| l.internal == want_internal)
        .filter_map(|l| l.result)
        .filter(|r| *r != DialOutcome::Other)
        .collect();
    if results.is_empty() {
        results.extend(call.dial_status.filter(|r| *r != DialOutcome::Other));
    }
    if !results.is_empty() && results.iter().all(|r| *r == DialOutcome::Busy) {
        Outcome::Busy
    } else if !results.is_empty() && results.iter().all(|r| *r == DialOutcome::Failed) {
        Outcome::Failed
    } else {
        Outcome::Missed
    }
}
