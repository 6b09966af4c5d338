//! FreeSWITCH events → `PbxEvent`s. Pure, but with memory: ESL has no Asterisk-style
//! `Linkedid` (its `Channel-Call-UUID` flips back to a leg's own uuid once it is
//! unbridged, see tests/fixtures/esl/README.md), so the normalizer remembers which call
//! each leg belongs to, learnt when the leg is created:
//!
//! - a leg nobody originated (`Call-Direction: inbound`: the trunk leg of an inbound
//!   call, the phone of an outbound one) names its call after its own `Unique-ID`, as
//!   Asterisk names a call after its first channel;
//! - a leg a `bridge` originated (`Other-Type: originator`, `Other-Leg-Unique-ID`) joins
//!   its originator's call, and reads as the originator dialing it (`DialBegin`);
//! - a mod_callcenter agent leg (`variable_cc_member_session_uuid`) joins the queue
//!   member's call, and reads as the queue offering the call to that agent.
//!
//! The rest of FreeSWITCH's vocabulary maps onto the same `PbxEvent`s the AMI side
//! gives: the B-leg's `CHANNEL_ANSWER` is a dial answered, its hang-up before that a
//! dial that failed (by `Hangup-Cause`), `CHANNEL_BRIDGE`/`UNBRIDGE` join and leave a
//! bridge named after the pair, `CHANNEL_EXECUTE voicemail` starts voicemail,
//! `vm::maintenance leave-message` names the message, `RECORD_START` the recording, and
//! `callcenter::info` the queue. Everything FreeSWITCH-specific stays in this module:
//! this file reads the channel's own events (create, answer, bridge, hang-up); the leg
//! memory is in `normalize/legs.rs`, what applications report (voicemail, recordings,
//! queues, campaign variables) in `normalize/applications.rs`, and how header values read
//! (times, caller ids, channel names, hang-up causes) in `normalize/values.rs`.

mod applications;
mod legs;
mod values;

use rustc_hash::FxHashMap as HashMap;

use crate::pbx::esl::normalize::legs::Leg;
use crate::pbx::esl::normalize::values::{dial_outcome, known, q850_of, queue_name, timestamp};
use crate::pbx::esl::plain::PlainEvent;
use crate::pbx::event::{ChannelId, DialOutcome, Id, PbxEvent, PbxEventKind, SeenAs};
use crate::time::Timestamp;

pub use crate::pbx::esl::normalize::values::endpoint_of_channel;

/// Why an event gave nothing. Only `Malformed` is worth a warning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Skip {
    /// An event the tracker does not need (most of `event plain ALL`).
    Ignored,
    /// An event we need, but a header it must carry is missing.
    Malformed(&'static str),
}

/// The events the client subscribes to: everything `normalize` reads, nothing more
/// (`CHANNEL_STATE` and `CODEC` alone are a third of `ALL`).
pub const SUBSCRIPTION: &str = "CHANNEL_CREATE CHANNEL_ANSWER CHANNEL_BRIDGE CHANNEL_UNBRIDGE CHANNEL_EXECUTE CHANNEL_HANGUP_COMPLETE CHANNEL_DESTROY RECORD_START RECORD_STOP HEARTBEAT CUSTOM callcenter::info vm::maintenance";

/// Turns FreeSWITCH events into `PbxEvent`s; one per ESL connection.
#[derive(Debug, Default)]
pub struct EslNormalizer {
    legs: HashMap<Id, Leg>,
    seq: u64,
    resync_mark: u64,
    /// Legs destroyed since the channel list was asked for (`None`: no list asked for):
    /// the list may still show them and must not bring them back.
    gone_since_mark: Option<rustc_hash::FxHashSet<Id>>,
    /// `variable_<name>` headers to pass on as `Variable`s (campaign variables).
    variables: Vec<(String, Id)>,
}

/// The headers every channel event is read for, in this order (see `Common`).
const COMMON: [&str; 10] = [
    "Unique-ID",
    "Event-Date-Timestamp",
    "Channel-Name",
    "Caller-Caller-ID-Number",
    "Caller-Destination-Number",
    "Caller-Context",
    "Other-Type",
    "Other-Leg-Unique-ID",
    "Hangup-Cause",
    "Caller-Caller-ID-Name",
];

impl EslNormalizer {
    pub fn new() -> Self {
        Self::default()
    }

    /// Also passes on the channel variables named in `names` (`utm_source` …): FreeSWITCH
    /// shows a channel's variables as `variable_<name>` headers of its events.
    pub fn with_variables(names: &[&str]) -> Self {
        EslNormalizer {
            variables: names
                .iter()
                .map(|n| (format!("variable_{n}"), Id::from(*n)))
                .collect(),
            ..Self::default()
        }
    }

    /// Translates one event into `out` (usually one `PbxEvent`, two for a bridge, none for
    /// the noise). `received_at` stands in when the event has no `Event-Date-Timestamp`.
    pub fn normalize(
        &mut self,
        event: &PlainEvent<'_>,
        received_at: Timestamp,
        out: &mut Vec<PbxEvent>,
    ) -> Result<(), Skip> {
        let name = event.name().ok_or(Skip::Malformed("Event-Name"))?;
        match name {
            "CHANNEL_CREATE" => self.created(event, received_at, out),
            "CHANNEL_ANSWER" => self.answered(event, received_at, out),
            "CHANNEL_BRIDGE" | "CHANNEL_UNBRIDGE" => {
                self.bridge(event, name == "CHANNEL_BRIDGE", received_at, out)
            }
            "CHANNEL_EXECUTE" => self.executed(event, received_at, out),
            "CHANNEL_HANGUP_COMPLETE" => self.hung_up(event, received_at, out),
            "CHANNEL_DESTROY" => {
                let uuid = event.get("Unique-ID").ok_or(Skip::Malformed("Unique-ID"))?;
                if self.legs.remove(uuid.as_ref()).is_some() {
                    if let Some(gone) = self.gone_since_mark.as_mut() {
                        gone.insert(uuid.as_ref().into());
                    }
                }
                Err(Skip::Ignored)
            }
            // Both name the file; the first one the tracker sees stands (a `RECORD_START`
            // lost in a reconnect still leaves the `RECORD_STOP`).
            "RECORD_START" | "RECORD_STOP" => self.recording(event, received_at, out),
            "CUSTOM" => match event.get("Event-Subclass").as_deref() {
                Some("callcenter::info") => self.callcenter(event, received_at, out),
                Some("vm::maintenance") => self.voicemail_left(event, received_at, out),
                _ => Err(Skip::Ignored),
            },
            _ => Err(Skip::Ignored),
        }
    }

    fn created(
        &mut self,
        event: &PlainEvent<'_>,
        received_at: Timestamp,
        out: &mut Vec<PbxEvent>,
    ) -> Result<(), Skip> {
        // The channel's own headers come first and are all there: this stops early.
        let [uuid, date, channel, number, dest, context, caller_name, direction] =
            event.get_many([
                COMMON[0],
                COMMON[1],
                COMMON[2],
                COMMON[3],
                COMMON[4],
                COMMON[5],
                COMMON[9],
                "Call-Direction",
            ]);
        // Only a leg FreeSWITCH dialed (`outbound`) may have an originator or be a
        // queue's agent leg; looking for those headers reads the whole event.
        let [other_type, other] = if direction.as_deref() == Some("inbound") {
            [None, None]
        } else {
            event.get_many([COMMON[6], COMMON[7]])
        };
        // A queue's agent leg has no originator; only then are its queue variables
        // looked for (they are among the `variable_*` lines: the pass reads to the end).
        let [member, queue] = if direction.as_deref() == Some("inbound")
            || other_type.as_deref() == Some("originator")
        {
            [None, None]
        } else {
            event.get_many(["variable_cc_member_session_uuid", "variable_cc_queue"])
        };
        let uuid = Id::from(uuid.ok_or(Skip::Malformed("Unique-ID"))?.as_ref());
        let at = timestamp(date.as_deref(), received_at);
        let channel = channel.unwrap_or_default();
        let endpoint = endpoint_of_channel(&channel);
        // A loopback half names its other half among its variables (read to the end,
        // for loopback channels only). The `-b` half, created second, joins the call of
        // the `-a` half: one pipe, one call, as Asterisk's Local `;1`/`;2`.
        let partner = if channel.starts_with("loopback/") {
            let [other] = event.get_many(["variable_other_loopback_leg_uuid"]);
            other
                .filter(|o| !o.is_empty() && o.as_ref() != uuid.as_str())
                .map(|o| ChannelId(o.as_ref().into()))
                .filter(|o| self.legs.contains_key(&o.0))
        } else {
            None
        };
        let originator = match (other_type.as_deref(), other) {
            (Some("originator"), Some(o)) if !o.is_empty() => Some(ChannelId(o.as_ref().into())),
            _ => None,
        };
        let member = member.filter(|m| !m.is_empty() && m.as_ref() != uuid.as_str());
        let dialer = originator
            .clone()
            .or_else(|| member.as_ref().map(|m| ChannelId(m.as_ref().into())));
        match dialer {
            None => {
                let call = match &partner {
                    Some(partner) => self.call_of(&partner.0),
                    None => uuid.clone(),
                };
                self.remember(uuid.clone(), Leg::new(call.clone(), None));
                out.push(PbxEvent {
                    at,
                    call: call.clone(),
                    channel: ChannelId(uuid.clone()),
                    kind: PbxEventKind::ChannelCreated {
                        name: channel.as_ref().into(),
                        endpoint,
                        caller_number: known(number.as_deref()),
                        caller_name: known(caller_name.as_deref()),
                        exten: known(dest.as_deref()),
                        context: known(context.as_deref()),
                    },
                });
                if let Some(other) = partner {
                    out.push(PbxEvent {
                        at,
                        call,
                        channel: ChannelId(uuid),
                        kind: PbxEventKind::PairedWith { other },
                    });
                } else if direction.as_deref() == Some("outbound") {
                    // A leg FreeSWITCH dialed for no other leg: the `originate` command.
                    out.push(PbxEvent {
                        at,
                        call,
                        channel: ChannelId(uuid),
                        kind: PbxEventKind::Originated,
                    });
                }
            }
            Some(dialer) => {
                let call = self.call_of(&dialer.0);
                let joined = uuid.clone();
                self.remember(uuid.clone(), Leg::new(call.clone(), Some(dialer.clone())));
                out.push(PbxEvent {
                    at,
                    call: call.clone(),
                    channel: dialer.clone(),
                    kind: PbxEventKind::DialBegin {
                        caller_number: known(number.as_deref()),
                        // The dialer as this leg shows it: FreeSWITCH gives the B-leg the
                        // A-leg's caller profile, not its channel name.
                        dialer: Box::default(),
                        dest: ChannelId(uuid.clone()),
                        dest_name: channel.as_ref().into(),
                        dest_endpoint: endpoint.clone(),
                        dial_string: known(dest.as_deref()),
                    },
                });
                if originator.is_none() {
                    // A mod_callcenter agent leg: the queue offers the call to the agent.
                    out.push(PbxEvent {
                        at,
                        call: call.clone(),
                        channel: dialer,
                        kind: PbxEventKind::QueueAgentRinging {
                            queue: queue_name(queue.as_deref().unwrap_or_default()),
                            dest: Some(ChannelId(uuid)),
                            endpoint,
                        },
                    });
                }
                // A dialed `-a` half whose `-b` half is known already (the order FreeSWITCH
                // creates them in makes this rare).
                if let Some(other) = partner {
                    out.push(PbxEvent {
                        at,
                        call,
                        channel: ChannelId(joined),
                        kind: PbxEventKind::PairedWith { other },
                    });
                }
            }
        }
        Ok(())
    }

    fn answered(
        &mut self,
        event: &PlainEvent<'_>,
        received_at: Timestamp,
        out: &mut Vec<PbxEvent>,
    ) -> Result<(), Skip> {
        let [uuid, date, channel] = event.get_many([COMMON[0], COMMON[1], COMMON[2]]);
        let uuid = uuid.ok_or(Skip::Malformed("Unique-ID"))?;
        let Some(leg) = self.legs.get_mut(uuid.as_ref()) else {
            return Err(Skip::Ignored);
        };
        let Some(dialer) = leg.dialer.clone().filter(|_| !leg.dial_ended) else {
            // The A-leg answered (by a bridge, voicemail or a queue): the bridges tell
            // who talks.
            return Err(Skip::Ignored);
        };
        leg.dial_ended = true;
        let call = leg.call.clone();
        out.push(PbxEvent {
            at: timestamp(date.as_deref(), received_at),
            call,
            channel: dialer,
            kind: PbxEventKind::DialEnd {
                dest: ChannelId(uuid.as_ref().into()),
                dest_endpoint: channel.as_deref().and_then(endpoint_of_channel),
                outcome: DialOutcome::Answered,
            },
        });
        Ok(())
    }

    fn bridge(
        &mut self,
        event: &PlainEvent<'_>,
        joined: bool,
        received_at: Timestamp,
        out: &mut Vec<PbxEvent>,
    ) -> Result<(), Skip> {
        let [a, b, date, uuid, other] = event.get_many([
            "Bridge-A-Unique-ID",
            "Bridge-B-Unique-ID",
            COMMON[1],
            COMMON[0],
            COMMON[7],
        ]);
        let a = a.or(uuid).ok_or(Skip::Malformed("Bridge-A-Unique-ID"))?;
        let b = b.or(other).ok_or(Skip::Malformed("Bridge-B-Unique-ID"))?;
        let at = timestamp(date.as_deref(), received_at);
        let bridge = Id::from(format!("{a}+{b}"));
        let call_a = self.call_of(&a);
        for leg in [a.as_ref(), b.as_ref()] {
            // A leg that already hung up has left every bridge (its hang-up said so).
            if self.legs.get(leg).is_some_and(|l| l.hung_up) {
                continue;
            }
            let call = match self.legs.get(leg) {
                Some(l) => l.call.clone(),
                None => call_a.clone(),
            };
            let bridge = bridge.clone();
            out.push(PbxEvent {
                at,
                call,
                channel: ChannelId(leg.into()),
                kind: if joined {
                    PbxEventKind::Bridged { bridge }
                } else {
                    PbxEventKind::Unbridged { bridge }
                },
            });
        }
        Ok(())
    }

    fn hung_up(
        &mut self,
        event: &PlainEvent<'_>,
        received_at: Timestamp,
        out: &mut Vec<PbxEvent>,
    ) -> Result<(), Skip> {
        // One pass for the channel's headers, its outcome variables and the campaign
        // variables (all of them among the `variable_*` lines: the pass reads to the end).
        let mut names: Vec<&str> = COMMON.to_vec();
        names.extend([
            "variable_originate_disposition",
            "variable_hangup_cause_q850",
            "variable_cc_member_session_uuid",
        ]);
        names.extend(self.variables.iter().map(|(h, _)| h.as_str()));
        let mut values = event.get_each(&names).into_iter();
        let mut next = || values.next().flatten();
        let (uuid, date, channel, number, dest, context) =
            (next(), next(), next(), next(), next(), next());
        let (other_type, other, cause, _caller_name) = (next(), next(), next(), next());
        let (disposition, q850, member) = (next(), next(), next());
        let campaign: Vec<_> = values.collect();
        let uuid = uuid.ok_or(Skip::Malformed("Unique-ID"))?;
        let at = timestamp(date.as_deref(), received_at);
        let channel_id = ChannelId(uuid.as_ref().into());
        let call = match self.legs.get(uuid.as_ref()) {
            Some(leg) => leg.call.clone(),
            // A leg created before we listened (a restart's gap): a dialed leg still
            // names the leg it was dialed for.
            None => match (other_type.as_deref(), other, member) {
                (Some("originator"), Some(o), _) if !o.is_empty() => self.call_of(&o),
                (_, _, Some(m)) if !m.is_empty() => self.call_of(&m),
                _ => uuid.as_ref().into(),
            },
        };
        let endpoint = channel.as_deref().and_then(endpoint_of_channel);
        let leg = self.legs.get_mut(uuid.as_ref());
        let dialer = leg.as_ref().and_then(|l| l.dialer.clone());
        if let Some(leg) = leg {
            leg.hung_up = true;
            if let Some(dialer) = dialer.clone().filter(|_| !leg.dial_ended) {
                leg.dial_ended = true;
                // The caller may have hung up first (a caller giving up ends before the
                // legs it was ringing): then the failed leg reports its own dial, so
                // that no event names a channel that is gone.
                let dialer_alive = self.legs.get(&dialer.0).is_some_and(|l| !l.hung_up);
                out.push(PbxEvent {
                    at,
                    call: call.clone(),
                    channel: if dialer_alive {
                        dialer
                    } else {
                        channel_id.clone()
                    },
                    kind: PbxEventKind::DialEnd {
                        dest: channel_id.clone(),
                        dest_endpoint: endpoint.clone(),
                        outcome: dial_outcome(cause.as_deref().unwrap_or_default()),
                    },
                });
            }
        }
        if dialer.is_none() {
            // The caller's leg: its campaign variables as they were at the end.
            self.push_variables(campaign, at, &call, &channel_id, out);
        }
        if let Some(disposition) = disposition.filter(|_| dialer.is_none()) {
            // The A-leg's last dial as a whole: the only trace of a dial that could not
            // even create a leg (an unregistered phone, a congested trunk).
            out.push(PbxEvent {
                at,
                call: call.clone(),
                channel: channel_id.clone(),
                kind: PbxEventKind::DialResult {
                    outcome: dial_outcome(&disposition),
                },
            });
        }
        let cause = q850
            .and_then(|c| c.trim().parse().ok())
            .or_else(|| cause.as_deref().and_then(q850_of));
        out.push(PbxEvent {
            at,
            call,
            channel: channel_id,
            kind: PbxEventKind::HungUp {
                cause,
                seen_as: Box::new(SeenAs {
                    name: channel.as_deref().unwrap_or_default().into(),
                    endpoint,
                    caller_number: known(number.as_deref()),
                    exten: known(dest.as_deref()),
                    context: known(context.as_deref()),
                }),
            },
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests;
