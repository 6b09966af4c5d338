//! The calls a load run plays: a realistic office mix built from transcripts recorded on
//! a real Asterisk or FreeSWITCH (answered, missed, ring group, queue, transfer,
//! voicemail, outbound),
//! each copy with its own channel and call ids and its own caller number, and the
//! schedule that starts them at a given rate with at most so many in progress. Pure:
//! bytes in, bytes and times out; `load::office` does the I/O.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Duration;

use bytes::Bytes;

use crate::config::PbxKind;
use crate::tools::sim::esl;
use crate::tools::sim::transcript::Transcript;

/// One kind of call in the mix.
pub struct Template {
    pub name: &'static str,
    /// Share of the mix (relative to the other templates' weights).
    pub weight: u32,
    pub inbound: bool,
    /// The `result` the call history must get (retailCRM's words).
    pub result: &'static str,
    /// The chunks (time since the call's start, bytes), ids and number as placeholders.
    chunks: Vec<(Duration, Bytes)>,
    /// The chunk with the first ringing (`DialBegin`/`AgentCalled`): the pop-up's cause.
    ring_chunk: Option<usize>,
    /// The chunk with the last `Hangup`: the history's cause.
    hangup_chunk: usize,
    /// The call's `Linkedid` as recorded (before the copy's suffix).
    linkedid: String,
}

/// Marks put into the template's bytes and replaced per copy: the copy number and the
/// caller's national number. Digits nothing in a recording contains, ten of each, and
/// replaced by ten digits: the event socket's `Content-Length`s stay right.
const COPY_MARK: u32 = 3_999_999_999;
const NUMBER_MARK: &str = "9000000000";

/// One kind of call as recorded: its share of the mix, whether it is inbound, the
/// history `result` it must get, the customer's national number in it, and its
/// transcripts (bytes and read timing) from Asterisk and, where recorded, FreeSWITCH.
struct Recorded {
    name: &'static str,
    weight: u32,
    inbound: bool,
    result: &'static str,
    number: &'static str,
    ami: (&'static [u8], &'static str),
    esl: Option<(&'static [u8], &'static str)>,
}

macro_rules! transcript {
    ($path:literal, $name:literal, $ext:literal) => {
        (
            include_bytes!(concat!("../../../tests/fixtures/", $path, $name, ".", $ext)) as &[u8],
            include_str!(concat!("../../../tests/fixtures/", $path, $name, ".timing")),
        )
    };
}

macro_rules! recorded {
    ($pbxs:ident, $name:literal, $weight:expr, $inbound:expr, $result:literal, $number:literal) => {
        Recorded {
            name: $name,
            weight: $weight,
            inbound: $inbound,
            result: $result,
            number: $number,
            ami: transcript!("asterisk/iax2/", $name, "ami"),
            esl: recorded!(@esl $pbxs, $name),
        }
    };
    (@esl both, $name:literal) => {
        Some(transcript!("esl/", $name, "esl"))
    };
    (@esl asterisk_only, $name:literal) => {
        None
    };
}

/// The office's mix: mostly answered inbound calls, as a sales line gets them. (No
/// attended transfer was recorded on FreeSWITCH.)
const MIX: &[Recorded] = &[
    recorded!(both, "inbound_answered", 30, true, "answered", "9161234567"),
    recorded!(
        both,
        "ring_group_second_answers",
        15,
        true,
        "answered",
        "9261112233"
    ),
    recorded!(
        both,
        "queue_agent_answers",
        10,
        true,
        "answered",
        "9857778899"
    ),
    recorded!(
        asterisk_only,
        "attended_transfer",
        5,
        true,
        "answered",
        "9160003344"
    ),
    recorded!(both, "inbound_missed", 12, true, "no answer", "9035556677"),
    recorded!(
        both,
        "inbound_voicemail",
        8,
        true,
        "no answer",
        "9167778800"
    ),
    recorded!(
        both,
        "outbound_answered",
        15,
        false,
        "answered",
        "9031112233"
    ),
    recorded!(
        both,
        "outbound_no_answer",
        5,
        false,
        "no answer",
        "4957654321"
    ),
];

#[derive(Debug, thiserror::Error)]
pub enum MixError {
    #[error("recording {0}: {1}")]
    Transcript(&'static str, String),
    #[error("recording {0} has no {1}")]
    Missing(&'static str, &'static str),
}

/// The office mix for one kind of PBX, ready to copy.
pub fn office_mix(kind: PbxKind) -> Result<Vec<Template>, MixError> {
    MIX.iter()
        .filter_map(|r| {
            let transcript = match kind {
                PbxKind::Asterisk => Transcript::from_recording(r.ami.0, r.ami.1),
                PbxKind::FreeSwitch => {
                    let (bytes, timing) = r.esl?;
                    esl::transcript_from_recording(bytes, timing)
                }
            };
            Some(
                transcript
                    .map_err(|e| MixError::Transcript(r.name, e.to_string()))
                    .and_then(|t| {
                        Template::new(kind, r.name, r.weight, r.inbound, r.result, r.number, &t)
                    }),
            )
        })
        .collect()
}

/// What marks a call's moments in one PBX's stream.
struct Marks {
    /// The value naming the call (`Linkedid`; the first leg's `Unique-ID`).
    call_id: &'static str,
    /// The first ringing: this event (the `nth` of it in the call, from 1).
    ring: &'static [&'static [u8]],
    ring_nth: usize,
    /// The last of these is the hang-up the history follows.
    hangup: &'static [u8],
}

const AMI_MARKS: Marks = Marks {
    call_id: "Linkedid: ",
    ring: &[b"Event: DialBegin\r\n", b"Event: AgentCalled\r\n"],
    ring_nth: 1,
    hangup: b"Event: Hangup\r\n",
};

/// A FreeSWITCH call's first leg is the caller's; the second one created rings.
const ESL_MARKS: Marks = Marks {
    call_id: "Unique-ID: ",
    ring: &[b"Event-Name: CHANNEL_CREATE\n"],
    ring_nth: 2,
    hangup: b"Event-Name: CHANNEL_HANGUP_COMPLETE\n",
};

impl Template {
    fn new(
        kind: PbxKind,
        name: &'static str,
        weight: u32,
        inbound: bool,
        result: &'static str,
        number: &str,
        recorded: &Transcript,
    ) -> Result<Template, MixError> {
        let (marked, marks) = match kind {
            PbxKind::Asterisk => (
                recorded.replica(COPY_MARK).with_value(number, NUMBER_MARK),
                &AMI_MARKS,
            ),
            PbxKind::FreeSwitch => (
                esl::map_event_values(&esl::replica(recorded, COPY_MARK), |_, v| {
                    v.replace(number, NUMBER_MARK)
                }),
                &ESL_MARKS,
            ),
        };
        let linkedid = find_value(&marked, marks.call_id)
            .and_then(|v| v.strip_suffix(&format!("-{COPY_MARK}")).map(str::to_string))
            .ok_or(MixError::Missing(name, "Linkedid"))?;
        let first = marked
            .chunks
            .first()
            .map(|(t, _)| *t)
            .ok_or(MixError::Missing(name, "events"))?;
        let chunks: Vec<(Duration, Bytes)> = marked
            .chunks
            .iter()
            .filter(|(_, b)| !b.is_empty())
            .map(|(t, b)| (t.saturating_sub(first), b.clone()))
            .collect();
        let count = |b: &Bytes, what: &[u8]| b.windows(what.len()).filter(|w| *w == what).count();
        let mut rings = 0;
        let ring_chunk = chunks.iter().position(|(_, b)| {
            rings += marks.ring.iter().map(|m| count(b, m)).sum::<usize>();
            rings >= marks.ring_nth
        });
        let hangup_chunk = chunks
            .iter()
            .rposition(|(_, b)| count(b, marks.hangup) > 0)
            .ok_or(MixError::Missing(name, "hang-up"))?;
        if inbound && ring_chunk.is_none() {
            return Err(MixError::Missing(name, "ringing"));
        }
        Ok(Template {
            name,
            weight,
            inbound,
            result,
            chunks,
            ring_chunk,
            hangup_chunk,
            linkedid,
        })
    }

    /// How long the call lasts at its recorded pace.
    pub fn length(&self) -> Duration {
        self.chunks.last().map(|(t, _)| *t).unwrap_or_default()
    }

    /// Copy `copy` of this call: its own ids, and `national` (10 digits) as the
    /// customer's number. Times are the recorded ones.
    pub fn copy(&self, copy: usize, national: &str) -> CallCopy {
        let mark = COPY_MARK.to_string();
        let copy_text = format!("{copy:010}");
        let chunks = self
            .chunks
            .iter()
            .map(|(t, b)| {
                let b = replace(b, mark.as_bytes(), copy_text.as_bytes());
                (
                    *t,
                    Bytes::from(replace(&b, NUMBER_MARK.as_bytes(), national.as_bytes())),
                )
            })
            .collect();
        CallCopy {
            chunks,
            ring_chunk: self.ring_chunk,
            hangup_chunk: self.hangup_chunk,
            call_id: format!("{}-{copy_text}", self.linkedid),
        }
    }
}

/// One call as it goes on the wire.
pub struct CallCopy {
    pub chunks: Vec<(Duration, Bytes)>,
    pub ring_chunk: Option<usize>,
    pub hangup_chunk: usize,
    /// The PBX's id for the call (its `Linkedid`).
    pub call_id: String,
}

/// The customer's 10-digit national number for call `n`: a mobile number of its own
/// (+7 999 …), so that every call is a new client and a duplicate customer shows.
pub fn national_number(n: usize) -> String {
    format!("999{:07}", n % 10_000_000)
}

/// Which template call `n` uses: the weights spread evenly over the run (not random:
/// two runs play the same calls).
pub fn pick(templates: &[Template], n: usize) -> usize {
    let total: u32 = templates.iter().map(|t| t.weight).sum();
    if total == 0 {
        return 0;
    }
    // A multiplicative walk spreads the kinds without runs of one kind.
    let mut slot = ((n as u64).wrapping_mul(2_654_435_761) % u64::from(total)) as u32;
    for (i, t) in templates.iter().enumerate() {
        if slot < t.weight {
            return i;
        }
        slot -= t.weight;
    }
    templates.len() - 1
}

/// When each call starts: one every `1/rate`, but never more than `concurrent` in
/// progress (a call waits for the first one to end). `lengths[i]` is call i's length.
pub fn schedule(lengths: &[Duration], rate: f64, concurrent: usize) -> Vec<Duration> {
    let mut ends: BinaryHeap<Reverse<Duration>> = BinaryHeap::new();
    let mut starts = Vec::with_capacity(lengths.len());
    let rate = rate.max(f64::MIN_POSITIVE);
    for (i, length) in lengths.iter().enumerate() {
        let mut start = Duration::from_secs_f64(i as f64 / rate);
        while let Some(Reverse(end)) = ends.peek().copied() {
            if end <= start {
                ends.pop();
            } else if ends.len() >= concurrent.max(1) {
                start = end;
                ends.pop();
            } else {
                break;
            }
        }
        if let Some(prev) = starts.last() {
            start = start.max(*prev);
        }
        ends.push(Reverse(start + *length));
        starts.push(start);
    }
    starts
}

/// The value of the first header line `key` (at the start of a line) in the stream.
fn find_value(t: &Transcript, key: &str) -> Option<String> {
    let line_start = format!("\n{key}");
    t.chunks.iter().find_map(|(_, b)| {
        let text = std::str::from_utf8(b).ok()?;
        let at = text.find(&line_start)? + line_start.len();
        let end = text[at..].find('\n')? + at;
        Some(text[at..end].trim_end_matches('\r').to_string())
    })
}

fn replace(haystack: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(haystack.len() + 64);
    let mut rest = haystack;
    while let Some(at) = rest.windows(from.len()).position(|w| w == from) {
        out.extend_from_slice(&rest[..at]);
        out.extend_from_slice(to);
        rest = &rest[at + from.len()..];
    }
    out.extend_from_slice(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_have_their_own_ids_and_number_and_keep_the_marks_of_ringing_and_hangup() {
        for (kind, recorded, call_id) in [
            (PbxKind::Asterisk, MIX.len(), "Linkedid: "),
            (
                PbxKind::FreeSwitch,
                MIX.iter().filter(|r| r.esl.is_some()).count(),
                "Unique-ID: ",
            ),
        ] {
            copies_of(office_mix(kind).expect("mix"), recorded, call_id);
        }
    }

    fn copies_of(mix: Vec<Template>, len: usize, call_id_key: &str) {
        assert_eq!(mix.len(), len);
        for t in &mix {
            let a = t.copy(1, &national_number(1));
            let b = t.copy(2, &national_number(2));
            let text = |c: &CallCopy| {
                c.chunks
                    .iter()
                    .map(|(_, b)| String::from_utf8_lossy(b).into_owned())
                    .collect::<String>()
            };
            let (ta, tb) = (text(&a), text(&b));
            assert!(!ta.contains(&COPY_MARK.to_string()), "{}", t.name);
            assert!(!ta.contains(NUMBER_MARK), "{}", t.name);
            assert!(
                ta.contains("9990000001") && tb.contains("9990000002"),
                "{}",
                t.name
            );
            assert!(
                ta.contains(&format!("{call_id_key}{}", a.call_id)),
                "{}",
                t.name
            );
            assert_ne!(a.call_id, b.call_id);
            let hangup = String::from_utf8_lossy(&a.chunks[a.hangup_chunk].1).into_owned();
            assert!(
                hangup.contains("Event: Hangup") || hangup.contains("CHANNEL_HANGUP_COMPLETE"),
                "{}",
                t.name
            );
            if t.inbound {
                let ring = a.ring_chunk.expect("inbound calls ring");
                assert!(ring < a.hangup_chunk);
            }
            assert!(t.length() > Duration::from_secs(1), "{}", t.name);
        }
    }

    #[test]
    fn the_mix_follows_the_weights() {
        let mix = office_mix(PbxKind::Asterisk).expect("mix");
        let mut counts = vec![0usize; mix.len()];
        for n in 0..10_000 {
            counts[pick(&mix, n)] += 1;
        }
        let total: u32 = mix.iter().map(|t| t.weight).sum();
        for (t, count) in mix.iter().zip(counts) {
            let expected = 10_000 * t.weight as usize / total as usize;
            assert!(
                count.abs_diff(expected) <= expected / 10 + 5,
                "{}: {count} of 10000, expected about {expected}",
                t.name
            );
        }
    }

    #[test]
    fn schedule_keeps_the_rate_and_caps_the_calls_in_progress() {
        let secs = Duration::from_secs;
        // 10 calls/s of 2 s each: 20 at once, under a cap of 50.
        let starts = schedule(&vec![secs(2); 100], 10.0, 50);
        assert_eq!(starts[10], secs(1));
        assert_eq!(starts[99], Duration::from_millis(9_900));
        // Capped at 5: the sixth waits for the first to end.
        let starts = schedule(&[secs(2); 10], 10.0, 5);
        assert_eq!(starts[4], Duration::from_millis(400));
        assert_eq!(starts[5], secs(2));
        for (i, s) in starts.iter().enumerate() {
            let live = starts
                .iter()
                .filter(|o| **o <= *s && **o + secs(2) > *s)
                .count();
            assert!(live <= 5, "call {i}: {live} at once");
        }
    }
}
