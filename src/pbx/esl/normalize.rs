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
//! `callcenter::info` the queue. Everything FreeSWITCH-specific stays in this file.

use rustc_hash::FxHashMap as HashMap;

use crate::pbx::esl::plain::PlainEvent;
use crate::pbx::event::{ChannelId, DialOutcome, Id, LiveChannel, PbxEvent, PbxEventKind, SeenAs};
use crate::time::Timestamp;

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

/// Legs remembered at most; a leg is forgotten at its `CHANNEL_DESTROY`, so this bounds
/// only what destroys missed during a disconnect would leave behind.
const MAX_LEGS: usize = 100_000;

/// What the normalizer remembers of one live leg.
#[derive(Debug, Clone)]
struct Leg {
    call: Id,
    /// The leg that dialed this one (its originator, or the queue member for an agent).
    dialer: Option<ChannelId>,
    /// Its dial attempt was reported ended (answered or failed).
    dial_ended: bool,
    hung_up: bool,
    /// Inside the voicemail application: its recordings are voicemail messages.
    in_voicemail: bool,
    /// Order of creation, to forget the oldest first.
    seq: u64,
}

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

    /// How many legs are remembered.
    pub fn live_legs(&self) -> usize {
        self.legs.len()
    }

    /// Forgets every leg (the PBX restarted, or a new connection's channel list follows).
    pub fn clear(&mut self) {
        self.legs.clear();
    }

    /// Marks the moment the PBX was asked for its channel list (see `learn_live`).
    pub fn begin_resync(&mut self) {
        self.resync_mark = self.seq;
        self.gone_since_mark = Some(Default::default());
    }

    /// Learns the legs of the PBX's channel list (after a reconnect), so that their later
    /// events find their calls, and forgets the legs older than the list that it no
    /// longer has (their destroy fell into a gap). `dialers` pairs a leg with the leg it
    /// was dialed for.
    pub fn learn_live(&mut self, channels: &[LiveChannel], dialers: &[(ChannelId, ChannelId)]) {
        let mark = self.resync_mark;
        let gone = self.gone_since_mark.take().unwrap_or_default();
        self.legs
            .retain(|uuid, leg| leg.seq > mark || channels.iter().any(|c| c.channel.0 == *uuid));
        for ch in channels {
            if self.legs.contains_key(&ch.channel.0)
                || gone.contains(&ch.channel.0)
                || ch.hanging_up
            {
                continue;
            }
            let dialer = dialers
                .iter()
                .find(|(leg, _)| leg == &ch.channel)
                .map(|(_, d)| d.clone());
            self.remember(
                ch.channel.0.clone(),
                Leg {
                    call: ch.call.clone(),
                    dialer,
                    dial_ended: ch.up,
                    hung_up: false,
                    in_voicemail: ch.application.as_deref() == Some("voicemail"),
                    seq: 0,
                },
            );
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

    fn remember(&mut self, uuid: Id, mut leg: Leg) {
        if self.legs.len() >= MAX_LEGS && !self.legs.contains_key(&uuid) {
            // Destroys were missed (a disconnect): forget the oldest tenth at once.
            let mut seqs: Vec<u64> = self.legs.values().map(|l| l.seq).collect();
            seqs.sort_unstable();
            let cut = seqs[seqs.len() / 10];
            self.legs.retain(|_, l| l.seq > cut);
        }
        self.seq += 1;
        leg.seq = self.seq;
        self.legs.insert(uuid, leg);
    }

    /// The call of a leg: remembered, or (a leg created before we connected) named
    /// after the leg it is bridged to or itself.
    fn call_of(&self, uuid: &str) -> Id {
        self.legs
            .get(uuid)
            .map(|l| l.call.clone())
            .unwrap_or_else(|| uuid.into())
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
                self.remember(
                    uuid.clone(),
                    Leg {
                        call: call.clone(),
                        dialer: None,
                        dial_ended: false,
                        hung_up: false,
                        in_voicemail: false,
                        seq: 0,
                    },
                );
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
                self.remember(
                    uuid.clone(),
                    Leg {
                        call: call.clone(),
                        dialer: Some(dialer.clone()),
                        dial_ended: false,
                        hung_up: false,
                        in_voicemail: false,
                        seq: 0,
                    },
                );
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

    fn executed(
        &mut self,
        event: &PlainEvent<'_>,
        received_at: Timestamp,
        out: &mut Vec<PbxEvent>,
    ) -> Result<(), Skip> {
        // `Application` is among the last headers: read from the end, most executes
        // (`set`, `answer` …) are dropped without reading the rest.
        let [app, data] = event.get_many_from_end(["Application", "Application-Data"]);
        let app = app.as_deref().unwrap_or_default();
        if !matches!(app, "voicemail" | "bridge" | "callcenter") {
            return Err(Skip::Ignored);
        }
        let [uuid, date] = event.get_many([COMMON[0], COMMON[1]]);
        let uuid = uuid.ok_or(Skip::Malformed("Unique-ID"))?;
        let at = timestamp(date.as_deref(), received_at);
        // The caller's campaign (UTM) variables, set by the dialplan before it rings
        // anyone: known before the call rings, as on Asterisk.
        let caller = self
            .legs
            .get(uuid.as_ref())
            .is_some_and(|l| l.dialer.is_none());
        let before = out.len();
        if caller && !self.variables.is_empty() {
            let call = self.call_of(&uuid);
            self.variables_of(event, at, &call, &ChannelId(uuid.as_ref().into()), out);
        }
        if app != "voicemail" {
            return if out.len() > before {
                Ok(())
            } else {
                Err(Skip::Ignored)
            };
        }
        // `voicemail [check] [auth] <profile> <domain> [<id>]`: `check` is a caller
        // listening to their own mailbox, not a message being left.
        let words: Vec<&str> = data
            .as_deref()
            .unwrap_or_default()
            .split_whitespace()
            .collect();
        if words.first().is_some_and(|w| *w == "check") || words.len() < 3 {
            return if out.len() > before {
                Ok(())
            } else {
                Err(Skip::Ignored)
            };
        }
        let mailbox = Id::from(format!("{}@{}", words[2], words[1]));
        if let Some(leg) = self.legs.get_mut(uuid.as_ref()) {
            leg.in_voicemail = true;
        }
        out.push(PbxEvent {
            at,
            call: self.call_of(&uuid),
            channel: ChannelId(uuid.as_ref().into()),
            kind: PbxEventKind::VoicemailStarted { mailbox },
        });
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

    fn variables_of(
        &self,
        event: &PlainEvent<'_>,
        at: Timestamp,
        call: &Id,
        channel: &ChannelId,
        out: &mut Vec<PbxEvent>,
    ) {
        let headers: Vec<&str> = self.variables.iter().map(|(h, _)| h.as_str()).collect();
        self.push_variables(event.get_each(&headers), at, call, channel, out);
    }

    /// `Variable`s of the configured campaign variables, from their values in order.
    fn push_variables(
        &self,
        values: Vec<Option<std::borrow::Cow<'_, str>>>,
        at: Timestamp,
        call: &Id,
        channel: &ChannelId,
        out: &mut Vec<PbxEvent>,
    ) {
        for ((_, name), value) in self.variables.iter().zip(values) {
            if let Some(value) = value.filter(|v| !v.is_empty()) {
                out.push(PbxEvent {
                    at,
                    call: call.clone(),
                    channel: channel.clone(),
                    kind: PbxEventKind::Variable {
                        name: name.clone(),
                        value: value.as_ref().into(),
                    },
                });
            }
        }
    }

    fn recording(
        &mut self,
        event: &PlainEvent<'_>,
        received_at: Timestamp,
        out: &mut Vec<PbxEvent>,
    ) -> Result<(), Skip> {
        let [path] = event.get_many_from_end(["Record-File-Path"]);
        let [uuid, date] = event.get_many([COMMON[0], COMMON[1]]);
        let uuid = uuid.ok_or(Skip::Malformed("Unique-ID"))?;
        let path = path
            .filter(|p| !p.is_empty())
            .ok_or(Skip::Malformed("Record-File-Path"))?;
        if self.legs.get(uuid.as_ref()).is_some_and(|l| l.in_voicemail) {
            // The voicemail application recording the message: `vm::maintenance` names it.
            return Err(Skip::Ignored);
        }
        out.push(PbxEvent {
            at: timestamp(date.as_deref(), received_at),
            call: self.call_of(&uuid),
            channel: ChannelId(uuid.as_ref().into()),
            kind: PbxEventKind::Recording {
                path: path.into_owned(),
            },
        });
        Ok(())
    }

    fn voicemail_left(
        &mut self,
        event: &PlainEvent<'_>,
        received_at: Timestamp,
        out: &mut Vec<PbxEvent>,
    ) -> Result<(), Skip> {
        let [action, user, domain, path, vm_uuid] = event.get_many_from_end([
            "VM-Action",
            "VM-User",
            "VM-Domain",
            "VM-File-Path",
            "VM-UUID",
        ]);
        if action.as_deref() != Some("leave-message") {
            return Err(Skip::Ignored);
        }
        let [uuid, date] = event.get_many([COMMON[0], COMMON[1]]);
        let uuid = vm_uuid.or(uuid).ok_or(Skip::Malformed("VM-UUID"))?;
        let path = path
            .filter(|p| !p.is_empty())
            .ok_or(Skip::Malformed("VM-File-Path"))?;
        let mailbox = format!(
            "{}@{}",
            user.as_deref().unwrap_or_default(),
            domain.as_deref().unwrap_or_default()
        );
        out.push(PbxEvent {
            at: timestamp(date.as_deref(), received_at),
            call: self.call_of(&uuid),
            channel: ChannelId(uuid.as_ref().into()),
            kind: PbxEventKind::VoicemailLeft {
                mailbox: mailbox.into(),
                message: path.into_owned(),
            },
        });
        Ok(())
    }

    fn callcenter(
        &mut self,
        event: &PlainEvent<'_>,
        received_at: Timestamp,
        out: &mut Vec<PbxEvent>,
    ) -> Result<(), Skip> {
        let [action, member, agent, queue, cause] = event.get_many_from_end([
            "CC-Action",
            "CC-Member-Session-UUID",
            "CC-Agent-UUID",
            "CC-Queue",
            "CC-Cause",
        ]);
        if !matches!(
            action.as_deref(),
            Some("bridge-agent-start" | "member-queue-end")
        ) {
            return Err(Skip::Ignored);
        }
        let [date, channel] = event.get_many([COMMON[1], COMMON[2]]);
        let at = timestamp(date.as_deref(), received_at);
        let kind = match action.as_deref() {
            Some("bridge-agent-start") => {
                let agent = agent.ok_or(Skip::Malformed("CC-Agent-UUID"))?;
                let endpoint = self
                    .legs
                    .get(agent.as_ref())
                    .and(channel.as_deref())
                    .and_then(endpoint_of_channel);
                PbxEventKind::QueueAgentConnected {
                    queue: queue_name(queue.as_deref().unwrap_or_default()),
                    dest: Some(ChannelId(agent.as_ref().into())),
                    endpoint,
                }
            }
            // The caller left the queue without an agent: hung up, or broke out to the
            // rest of the dialplan (`CC-Cancel-Reason`).
            Some("member-queue-end") if cause.as_deref() == Some("Cancel") => {
                PbxEventKind::QueueAbandoned {
                    queue: queue_name(queue.as_deref().unwrap_or_default()),
                }
            }
            _ => return Err(Skip::Ignored),
        };
        let member = member.ok_or(Skip::Malformed("CC-Member-Session-UUID"))?;
        out.push(PbxEvent {
            at,
            call: self.call_of(&member),
            channel: ChannelId(member.as_ref().into()),
            kind,
        });
        Ok(())
    }
}

/// `Event-Date-Timestamp` is microseconds since the epoch.
fn timestamp(value: Option<&str>, received_at: Timestamp) -> Timestamp {
    value
        .and_then(|v| v.trim().parse::<i64>().ok())
        .filter(|us| *us > 0)
        .map(Timestamp)
        .unwrap_or(received_at)
}

fn known(value: Option<&str>) -> Option<Id> {
    value
        .map(str::trim)
        .filter(|v| !v.is_empty() && *v != "_undef_")
        .map(Id::from)
}

/// `sales@default` → `sales`: the queue's name without its domain, as Asterisk names it.
fn queue_name(queue: &str) -> Id {
    Id::from(queue.split('@').next().unwrap_or(queue))
}

/// The extension or number a channel belongs to, from its name:
/// `sofia/internal/101@127.0.0.1:5090` → `101`, `sofia/external/+7916…@host` →
/// `+7916…`, `user/102@domain` → `102`, `loopback/103-a` → `103`.
pub fn endpoint_of_channel(name: &str) -> Option<Id> {
    let (tech, rest) = name.split_once('/')?;
    // The user is in the last part: `sofia/<profile>/<user>@…`,
    // `sofia/gateway/<gateway>/<number>`, `user/<user>@<domain>`.
    let last = rest.rsplit('/').next()?;
    let user = last.split('@').next()?;
    let user = if tech == "loopback" {
        user.rsplit_once('-').map_or(user, |(u, _)| u)
    } else {
        user
    };
    let user = user.strip_prefix("sip:").unwrap_or(user);
    (!user.is_empty()).then(|| Id::from(user))
}

/// How a dial attempt ended, from a leg's `Hangup-Cause` or a caller's
/// `originate_disposition`.
fn dial_outcome(cause: &str) -> DialOutcome {
    match cause {
        "SUCCESS" | "ANSWER" => DialOutcome::Answered,
        "USER_BUSY" | "CALL_REJECTED" => DialOutcome::Busy,
        "NO_ANSWER"
        | "NO_USER_RESPONSE"
        | "ALLOTTED_TIMEOUT"
        | "RECOVERY_ON_TIMER_EXPIRE"
        | "PROGRESS_TIMEOUT"
        | "MEDIA_TIMEOUT" => DialOutcome::NoAnswer,
        "ORIGINATOR_CANCEL" | "LOSE_RACE" | "PICKED_OFF" | "NORMAL_CLEARING" => {
            DialOutcome::Cancelled
        }
        "" | "NONE" | "UNSPECIFIED" => DialOutcome::Other,
        _ => DialOutcome::Failed,
    }
}

/// Q.850 codes of FreeSWITCH's cause names, for the ones without
/// `variable_hangup_cause_q850`. FreeSWITCH's own causes (above 127) keep their numbers.
fn q850_of(cause: &str) -> Option<u16> {
    Some(match cause {
        "UNSPECIFIED" => 0,
        "UNALLOCATED_NUMBER" => 1,
        "NO_ROUTE_DESTINATION" => 3,
        "NORMAL_CLEARING" => 16,
        "USER_BUSY" => 17,
        "NO_USER_RESPONSE" => 18,
        "NO_ANSWER" => 19,
        "SUBSCRIBER_ABSENT" => 20,
        "CALL_REJECTED" => 21,
        "DESTINATION_OUT_OF_ORDER" => 27,
        "INVALID_NUMBER_FORMAT" => 28,
        "NORMAL_UNSPECIFIED" => 31,
        "NORMAL_CIRCUIT_CONGESTION" => 34,
        "NETWORK_OUT_OF_ORDER" => 38,
        "NORMAL_TEMPORARY_FAILURE" => 41,
        "SWITCH_CONGESTION" => 42,
        "ORIGINATOR_CANCEL" => 487,
        "LOSE_RACE" => 502,
        "PICKED_OFF" => 601,
        "ALLOTTED_TIMEOUT" => 602,
        "USER_NOT_REGISTERED" => 606,
        "PROGRESS_TIMEOUT" => 607,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pbx::esl::{EslCodec, EslItem};
    use bytes::BytesMut;
    use tokio_util::codec::Decoder;

    /// The event bodies of a recording, in order.
    fn bodies(name: &str) -> Vec<bytes::Bytes> {
        let path = format!(
            "{}/tests/fixtures/esl/{name}.esl",
            env!("CARGO_MANIFEST_DIR")
        );
        let bytes = std::fs::read(path).expect("fixture");
        let mut buf = BytesMut::from(&bytes[..]);
        let mut codec = EslCodec::new();
        let mut out = Vec::new();
        while let Ok(Some(item)) = codec.decode(&mut buf) {
            if let EslItem::Message(m) = item {
                if m.content_type() == Some("text/event-plain") {
                    out.push(m.body);
                }
            }
        }
        out
    }

    /// Every `PbxEvent` a recording gives, in order.
    fn events_of(name: &str) -> Vec<PbxEvent> {
        let mut normalizer = EslNormalizer::new();
        let mut out = Vec::new();
        for body in bodies(name) {
            let r = normalizer.normalize(&PlainEvent::parse(&body), Timestamp(1), &mut out);
            assert!(!matches!(r, Err(Skip::Malformed(_))), "{name}: {r:?}");
        }
        assert_eq!(normalizer.live_legs(), 0, "{name}: every leg destroyed");
        out
    }

    fn short(ev: &PbxEvent) -> String {
        let id = |c: &str| c.chars().take(4).collect::<String>();
        let kind = match &ev.kind {
            PbxEventKind::ChannelCreated { endpoint, .. } => {
                format!("created {}", endpoint.as_deref().unwrap_or("-"))
            }
            PbxEventKind::DialBegin {
                dest,
                dest_endpoint,
                ..
            } => format!(
                "dial {} {}",
                id(&dest.0),
                dest_endpoint.as_deref().unwrap_or("-")
            ),
            PbxEventKind::DialEnd { dest, outcome, .. } => {
                format!("dialend {} {outcome:?}", id(&dest.0))
            }
            PbxEventKind::HungUp { cause, .. } => format!("hangup {cause:?}"),
            PbxEventKind::Bridged { .. } => "bridged".into(),
            PbxEventKind::Unbridged { .. } => "unbridged".into(),
            PbxEventKind::QueueAgentRinging {
                queue, endpoint, ..
            } => {
                format!(
                    "agent ringing {queue} {}",
                    endpoint.as_deref().unwrap_or("-")
                )
            }
            PbxEventKind::QueueAgentConnected {
                queue, endpoint, ..
            } => {
                format!(
                    "agent connected {queue} {}",
                    endpoint.as_deref().unwrap_or("-")
                )
            }
            PbxEventKind::QueueAbandoned { queue } => format!("abandoned {queue}"),
            PbxEventKind::VoicemailStarted { mailbox } => format!("voicemail {mailbox}"),
            PbxEventKind::VoicemailLeft { mailbox, .. } => format!("message {mailbox}"),
            PbxEventKind::Recording { .. } => "recording".into(),
            PbxEventKind::DialResult { outcome } => format!("result {outcome:?}"),
            other => format!("{other:?}"),
        };
        format!("{} {} {kind}", id(&ev.call), id(&ev.channel.0))
    }

    #[test]
    fn inbound_answered_reads_as_a_dial_answered_and_a_bridge() {
        let got: Vec<String> = events_of("inbound_answered").iter().map(short).collect();
        assert_eq!(
            got,
            [
                "58b4 58b4 created +79161234567",
                "58b4 58b4 dial e81a 101",
                "58b4 58b4 dialend e81a Answered",
                "58b4 58b4 bridged",
                "58b4 e81a bridged",
                // 101 hangs up first; its leg is then out of the bridge.
                "58b4 e81a hangup Some(16)",
                "58b4 58b4 unbridged",
                "58b4 58b4 result Answered",
                "58b4 58b4 hangup Some(16)",
            ]
        );
    }

    #[test]
    fn a_caller_giving_up_ends_the_ringing_leg_as_cancelled_by_the_leg_itself() {
        let got: Vec<String> = events_of("inbound_missed").iter().map(short).collect();
        assert_eq!(
            got,
            [
                "012a 012a created +79035556677",
                "012a 012a dial 12c3 101",
                "012a 012a result Cancelled",
                // ORIGINATOR_CANCEL, with `hangup_cause_q850` 16 as FreeSWITCH gives it.
                "012a 012a hangup Some(16)",
                // The caller is gone: the dial's end is reported on the ringing leg.
                "012a 12c3 dialend 12c3 Cancelled",
                "012a 12c3 hangup Some(16)",
            ]
        );
    }

    #[test]
    fn ring_group_losers_are_cancelled_and_the_winner_answered() {
        let events = events_of("ring_group_second_answers");
        let ends: Vec<String> = events
            .iter()
            .filter(|e| matches!(e.kind, PbxEventKind::DialEnd { .. }))
            .map(short)
            .collect();
        assert_eq!(ends.len(), 2, "{ends:?}");
        assert!(ends.iter().any(|e| e.ends_with("Answered")), "{ends:?}");
        assert!(ends.iter().any(|e| e.ends_with("Cancelled")), "{ends:?}");
        let call = &events[0].call;
        assert!(events.iter().all(|e| e.call == *call), "one call");
    }

    #[test]
    fn queue_agent_legs_join_the_members_call() {
        let got: Vec<String> = events_of("queue_agent_answers").iter().map(short).collect();
        let call = &got[0][..4];
        assert!(got.iter().all(|e| e.starts_with(call)), "{got:#?}");
        let wanted = [
            "agent ringing sales 102",
            "dialend 7025 NoAnswer",
            "agent ringing sales 101",
            "dialend e9db Answered",
            "agent connected sales 101",
            "recording",
        ];
        let mut at = 0;
        for w in wanted {
            let found = got[at..].iter().position(|e| e.ends_with(w));
            assert!(found.is_some(), "{w:?} after {at} in {got:#?}");
            at += found.unwrap_or(0) + 1;
        }
    }

    #[test]
    fn voicemail_recording_is_the_message_not_a_call_recording() {
        let got: Vec<String> = events_of("inbound_voicemail").iter().map(short).collect();
        assert!(
            got.iter().any(|e| e.ends_with("voicemail 102@192.0.2.2")),
            "{got:#?}"
        );
        assert!(
            got.iter().any(|e| e.ends_with("message 102@192.0.2.2")),
            "{got:#?}"
        );
        assert!(!got.iter().any(|e| e.ends_with("recording")), "{got:#?}");
    }

    /// A carrier call through loopback channels: the trunk leg's `-b` half joins the
    /// `-a` half's call, and so does the handset's `-b` half of the phone leg: four
    /// channels, one call.
    #[test]
    fn loopback_halves_join_the_call_of_their_other_half() {
        let events = events_of("loopback/inbound_answered");
        let call = &events[0].call;
        assert!(events.iter().all(|e| e.call == *call), "one call");
        let pairs = events
            .iter()
            .filter(|e| matches!(e.kind, PbxEventKind::PairedWith { .. }))
            .count();
        assert_eq!(pairs, 2, "the trunk's pair and the phone's pair");
        let events = events_of("loopback/outbound_answered");
        assert!(events.iter().all(|e| e.call == events[0].call), "one call");
    }

    /// `originate user/101 &bridge(…)`: the employee's leg is placed by FreeSWITCH for no
    /// other leg; the gateway leg is dialed by it.
    #[test]
    fn an_originated_leg_is_marked_and_the_leg_it_bridges_joins_its_call() {
        let got: Vec<String> = events_of("synthetic/originate_user_bridge_answered")
            .iter()
            .map(short)
            .collect();
        assert_eq!(got[0], "50a7 50a7 created 101");
        assert_eq!(got[1], "50a7 50a7 Originated");
        assert!(
            got[2].starts_with("50a7 50a7 dial 0977 89031112233"),
            "{got:#?}"
        );
        assert!(got.iter().all(|e| e.starts_with("50a7")), "{got:#?}");
    }

    #[test]
    fn outbound_trunk_leg_not_answering_is_no_answer() {
        let got: Vec<String> = events_of("outbound_no_answer").iter().map(short).collect();
        assert!(got[0].ends_with("created 101"), "{got:#?}");
        assert!(got.iter().any(|e| e.contains("NoAnswer")), "{got:#?}");
    }

    /// The caller hanging up while the queue rings an agent: the real member-queue-end
    /// event of the recording, as mod_callcenter sends it for a caller who left
    /// (`CC-Cause: Cancel`).
    #[test]
    fn a_caller_leaving_the_queue_is_an_abandon_and_the_call_is_missed() {
        let mut normalizer = EslNormalizer::new();
        let mut tracker = crate::call::CallTracker::new(crate::call::TrackerConfig {
            pbx: "office".into(),
            ..Default::default()
        });
        let mut out = Vec::new();
        let mut summary = None;
        let mut start: Option<String> = None;
        for body in bodies("queue_agent_answers") {
            let m = &body;
            let ev = PlainEvent::parse(m);
            if ev.get("CC-Action").as_deref() == Some("member-queue-start") {
                start = Some(String::from_utf8_lossy(m).into_owned());
            }
            let agent_answers = ev.name() == Some("CHANNEL_ANSWER")
                && ev.get("variable_cc_member_session_uuid").is_some();
            if agent_answers {
                // The caller leaves while 101 still rings: mod_callcenter ends the
                // member with `CC-Cause: Cancel` (the member-queue-start event of the
                // recording, as member-queue-end).
                let left = start
                    .take()
                    .expect("member-queue-start before")
                    .replace(
                        "CC-Action: member-queue-start",
                        "CC-Action: member-queue-end",
                    )
                    .replace(
                        "CC-Action:",
                        "CC-Cause: Cancel\nCC-Cancel-Reason: NONE\nCC-Action:",
                    );
                let _ = normalizer.normalize(
                    &PlainEvent::parse(left.as_bytes()),
                    Timestamp(2),
                    &mut out,
                );
                break;
            }
            let _ = normalizer.normalize(&ev, Timestamp(1), &mut out);
        }
        assert!(
            out.iter().any(
                |e| matches!(&e.kind, PbxEventKind::QueueAbandoned { queue } if queue == "sales")
            ),
            "{out:#?}"
        );
        for ev in &out {
            for u in tracker.apply(ev) {
                if let crate::call::CallStage::Ended(s) = u.stage {
                    summary = Some(s);
                }
            }
        }
        // The caller's leg and the ringing agent leg hang up.
        let hangups: Vec<PbxEvent> = tracker_hangups(&out);
        for ev in &hangups {
            for u in tracker.apply(ev) {
                if let crate::call::CallStage::Ended(s) = u.stage {
                    summary = Some(s);
                }
            }
        }
        let s = summary.expect("the call ended");
        assert_eq!(s.outcome, crate::call::Outcome::Missed);
        assert_eq!(s.queue.as_deref(), Some("sales"));
        assert_eq!(s.employee, None);
    }

    /// Hang-ups of every channel the events named, as the PBX would send them.
    fn tracker_hangups(events: &[PbxEvent]) -> Vec<PbxEvent> {
        let mut seen: Vec<(Id, ChannelId)> = Vec::new();
        for ev in events {
            let mut add = |c: &ChannelId| {
                if !seen.iter().any(|(_, s)| s == c) {
                    seen.push((ev.call.clone(), c.clone()));
                }
            };
            add(&ev.channel);
            if let PbxEventKind::DialBegin { dest, .. } = &ev.kind {
                add(dest);
            }
        }
        seen.into_iter()
            .rev()
            .map(|(call, channel)| PbxEvent {
                at: Timestamp(3),
                call,
                channel,
                kind: PbxEventKind::HungUp {
                    cause: Some(16),
                    seen_as: Box::default(),
                },
            })
            .collect()
    }

    #[test]
    fn campaign_variables_set_before_the_bridge_are_known_when_it_rings() {
        let mut normalizer = EslNormalizer::with_variables(&["UTM_SOURCE", "UTM_CAMPAIGN"]);
        let mut tracker = crate::call::CallTracker::new(crate::call::TrackerConfig {
            pbx: "office".into(),
            ..Default::default()
        });
        let mut out = Vec::new();
        let mut ringing = None;
        for body in bodies("inbound_answered") {
            // The dialplan ran `set UTM_SOURCE=yandex` and `set UTM_CAMPAIGN=winter sale`
            // on the caller's leg before `bridge`: its later events show them.
            let text = String::from_utf8_lossy(&body).replace(
                "\nvariable_direction: inbound\n",
                "\nvariable_direction: inbound\nvariable_UTM_SOURCE: yandex\nvariable_UTM_CAMPAIGN: winter%20sale\n",
            );
            let ev = PlainEvent::parse(text.as_bytes());
            let _ = normalizer.normalize(&ev, Timestamp(1), &mut out);
            for e in out.drain(..) {
                for u in tracker.apply(&e) {
                    if matches!(u.stage, crate::call::CallStage::Ringing { .. })
                        && ringing.is_none()
                    {
                        ringing = Some(u.header.campaign.clone());
                    }
                }
            }
        }
        let campaign = ringing.expect("it rang");
        assert_eq!(campaign.source.as_deref(), Some("yandex"));
        assert_eq!(campaign.campaign.as_deref(), Some("winter sale"));
    }

    #[test]
    fn an_event_without_its_ids_is_malformed_and_noise_is_ignored() {
        let mut n = EslNormalizer::new();
        let mut out = Vec::new();
        let ev = PlainEvent::parse(b"Event-Name: CHANNEL_CREATE\nChannel-Name: sofia/x/1\n\n");
        assert_eq!(
            n.normalize(&ev, Timestamp(1), &mut out),
            Err(Skip::Malformed("Unique-ID"))
        );
        let ev = PlainEvent::parse(b"Event-Name: CHANNEL_STATE\nUnique-ID: a\n\n");
        assert_eq!(n.normalize(&ev, Timestamp(1), &mut out), Err(Skip::Ignored));
        let ev = PlainEvent::parse(b"no event at all");
        assert_eq!(
            n.normalize(&ev, Timestamp(1), &mut out),
            Err(Skip::Malformed("Event-Name"))
        );
        assert!(out.is_empty());
    }

    #[test]
    fn endpoints_are_read_from_channel_names() {
        for (name, want) in [
            ("sofia/internal/101@127.0.0.1:5090", Some("101")),
            (
                "sofia/external/+79161234567@127.0.0.1",
                Some("+79161234567"),
            ),
            ("sofia/gateway/carrier/89031112233", Some("89031112233")),
            ("user/102@example.com", Some("102")),
            ("loopback/103-a", Some("103")),
            ("garbage", None),
        ] {
            assert_eq!(endpoint_of_channel(name).as_deref(), want, "{name}");
        }
    }

    proptest::proptest! {
        #[test]
        fn random_events_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..2048)) {
            let mut n = EslNormalizer::new();
            let mut out = Vec::new();
            let _ = n.normalize(&PlainEvent::parse(&bytes), Timestamp(1), &mut out);
            let mut with_name = b"Event-Name: CHANNEL_HANGUP_COMPLETE\n".to_vec();
            with_name.extend_from_slice(&bytes);
            let _ = n.normalize(&PlainEvent::parse(&with_name), Timestamp(1), &mut out);
        }
    }
}
