//! `CallTracker`: the per-call state machine. Pure: `PbxEvent`s (and the moment they
//! happened) in, `CallUpdate`s out; no sockets, clocks or files.
//!
//! Channels are grouped into calls by the PBX's call id (Asterisk `Linkedid`); a
//! channel whose call id changes (a transfer target joining the caller's bridge) moves
//! to that call. A call starts with its first channel (the origin: the trunk leg of an
//! inbound call, the phone of an outbound one), rings employees through dial attempts
//! and queue offers, and ends when its last channel hangs up.
//!
//! Who talks with the customer is read from the graph of channels: bridge membership,
//! the two halves of each Local channel, and answered dial attempts until both sides
//! sit in bridges. Every change of that graph opens or closes talk segments, so a
//! transfer gives each employee their own talk time and the last one becomes the
//! answerer. Outcomes come from dial results, queue events and voicemail, never from
//! hang-up causes (ring-out legs hang up with cause 0, ring-group losers with 26: see
//! tests/fixtures/asterisk/README.md).

use std::collections::VecDeque;

use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};

use serde::{Deserialize, Serialize};

use crate::call::{
    CallHeader, CallStage, CallSummary, CallUpdate, Campaign, CampaignVariables, Direction,
    InternalExtensions, Outcome, Talker, Voicemail,
};
use crate::pbx::event::{ChannelId, DialOutcome, Id, LiveChannel, PbxEvent, PbxEventKind, SeenAs};
use crate::time::Timestamp;

#[derive(Debug, Clone, Default)]
pub struct TrackerConfig {
    /// The PBX's name from the configuration; part of every call's identity.
    pub pbx: String,
    pub internal: InternalExtensions,
    /// Dialplan contexts where outside calls arrive: an origin channel created in one of
    /// them is a customer, whatever its name says.
    pub trunk_contexts: Vec<String>,
    /// Channel variables holding the caller's campaign (UTM) data.
    pub campaign_variables: CampaignVariables,
}

/// How many ended call ids are remembered, so that a stray event arriving after a
/// call's last hang-up does not open a phantom call.
const ENDED_MEMORY: usize = 4096;

/// Two talk segments of one employee closer than this are one (Local channel
/// optimisation swaps channels between bridges in a few microseconds).
const SEGMENT_GAP_US: i64 = 1_000_000;

/// How many channel ids a call remembers for finding its recording.
const MAX_REMEMBERED_CHANNELS: usize = 32;

#[derive(Debug, Default)]
pub struct CallTracker {
    config: TrackerConfig,
    // Call ids, bridge ids and channel names are `Id`s: inline up to 24 bytes, so most
    // events are tracked without allocating.
    calls: HashMap<Id, LiveCall>,
    channels: HashMap<ChannelId, Chan>,
    bridges: HashMap<Id, Vec<ChannelId>>,
    /// Local channel base name (`Local/101@phones-00000001`) → its `;1` and `;2`.
    locals: HashMap<Id, [Option<ChannelId>; 2]>,
    ended: VecDeque<Id>,
    ended_set: HashSet<Id>,
    dirty: HashSet<Id>,
    /// Events applied so far; each call remembers the count at its last event, so a
    /// resync can tell calls older than the PBX's channel list from newer ones without
    /// comparing two machines' clocks.
    seq: u64,
    resync_mark: u64,
    /// Channels that hung up since the PBX was asked for its list (`None`: no list asked
    /// for): the list may still show them, and must not bring them back.
    gone_since_mark: Option<HashSet<ChannelId>>,
    /// Scratch list of `apply`, kept so that applying an event does not allocate for it.
    recompute_buf: Vec<Id>,
    /// The latest event time seen (the PBX's clock), from events and restored calls.
    pbx_clock: Timestamp,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Chan {
    id: ChannelId,
    call: Id,
    name: Id,
    endpoint: Option<Id>,
    /// Local half: (base name, 0 for `;1`, 1 for `;2`).
    local: Option<(Id, usize)>,
    bridge: Option<Id>,
    bridged_ever: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct LiveCall {
    id: Id,
    started_at: Timestamp,
    last_event_at: Timestamp,
    #[serde(default)]
    last_seq: u64,
    origin: ChannelId,
    origin_endpoint: Option<Id>,
    origin_exten: Option<Id>,
    origin_from_trunk: bool,
    /// The call was first heard of by a later channel (its first channel's creation
    /// fell into a gap): `origin` is the channel it is named after, not yet described.
    #[serde(default)]
    origin_unseen: bool,
    /// The first channel is a Local or loopback half: a pipe, not a device. An originate
    /// places such a channel on behalf of an extension named only by its caller id.
    #[serde(default)]
    origin_virtual: bool,
    /// The PBX placed the first channel itself (an originate): no caller dialed it.
    #[serde(default)]
    origin_originated: bool,
    /// Events of this call may have been missed (it lived through a reconnect or a
    /// restart): until a channel list judges it, the list knows better than the events
    /// about its channels' bridges and answers.
    #[serde(default)]
    gap: bool,
    #[serde(default)]
    campaign: Campaign,
    caller_number: Option<Id>,
    direction: Option<Direction>,
    dialed_number: Option<Id>,
    members: Vec<ChannelId>,
    seen: Vec<Id>,
    legs: Vec<Leg>,
    /// Answered dial attempts (dialer, destination): they connect the two until both
    /// sides have been in bridges, which then tell the truth.
    links: Vec<(ChannelId, ChannelId)>,
    announced: Vec<String>,
    answer: Option<(Id, Timestamp)>,
    segments: Vec<Segment>,
    voicemail: Option<Voicemail>,
    recording: Option<String>,
    dial_status: Option<DialOutcome>,
    queue: Option<Id>,
    abandoned: bool,
    reconstructed: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Leg {
    channel: ChannelId,
    endpoint: Option<Id>,
    internal: bool,
    result: Option<DialOutcome>,
    /// The channel that dialed it (an answer connects the two).
    #[serde(default)]
    dialer: Option<ChannelId>,
    /// The number the dial asked for (from its dial string), for an outbound call whose
    /// first channel does not show it.
    #[serde(default)]
    number: Option<Id>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Segment {
    extension: Id,
    from: Timestamp,
    to: Option<Timestamp>,
}

/// What the tracker knows of one live call, for persisting it across a restart of the
/// daemon. Opaque: store it as JSON, give it back to `CallTracker::restore`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CallSnapshot {
    call: LiveCall,
    channels: Vec<Chan>,
}

impl CallSnapshot {
    pub fn call_id(&self) -> &str {
        &self.call.id
    }
}

impl LiveCall {
    fn new(id: &str, origin: &ChannelId, at: Timestamp) -> Self {
        LiveCall {
            id: id.into(),
            started_at: at,
            last_event_at: at,
            last_seq: 0,
            origin: origin.clone(),
            origin_endpoint: None,
            origin_exten: None,
            origin_from_trunk: false,
            origin_unseen: false,
            origin_virtual: false,
            origin_originated: false,
            gap: false,
            campaign: Campaign::default(),
            caller_number: None,
            direction: None,
            dialed_number: None,
            members: Vec::new(),
            seen: Vec::new(),
            legs: Vec::new(),
            links: Vec::new(),
            announced: Vec::new(),
            answer: None,
            segments: Vec::new(),
            voicemail: None,
            recording: None,
            dial_status: None,
            queue: None,
            abandoned: false,
            reconstructed: false,
        }
    }

    fn join(&mut self, channel: &ChannelId) {
        if !self.members.contains(channel) {
            self.members.push(channel.clone());
        }
        if self.seen.len() < MAX_REMEMBERED_CHANNELS
            && !self.seen.iter().any(|s| s == channel.0.as_str())
        {
            self.seen.push(channel.0.clone());
        }
    }
}

impl CallTracker {
    pub fn new(config: TrackerConfig) -> Self {
        CallTracker {
            config,
            ..CallTracker::default()
        }
    }

    /// The latest moment the PBX's own clock has shown (its events' times, and the last
    /// events of restored calls). Staleness is judged on this clock, not the daemon's:
    /// the two machines' clocks need not agree.
    pub fn pbx_clock(&self) -> Timestamp {
        self.pbx_clock
    }

    /// Calls in progress.
    pub fn live_calls(&self) -> usize {
        self.calls.len()
    }

    /// The tracker knows the call only in part: it was taken up from a channel list or
    /// first heard of mid-call (its start fell before this process listened), or a
    /// channel of it vanished unseen.
    pub fn known_in_part(&self, call_id: &str) -> bool {
        self.calls.get(call_id).is_some_and(|c| c.reconstructed)
    }

    /// Channels in progress (all calls).
    pub fn live_channels(&self) -> usize {
        self.channels.len()
    }

    /// Nothing is tracked: no call, channel, bridge or Local pair left behind.
    pub fn is_idle(&self) -> bool {
        self.calls.is_empty()
            && self.channels.is_empty()
            && self.bridges.is_empty()
            && self.locals.is_empty()
    }

    /// Ids of the calls whose state changed since the last call of this function.
    pub fn take_dirty(&mut self) -> Vec<String> {
        let mut ids: Vec<String> = self
            .dirty
            .drain()
            .filter(|id| self.calls.contains_key(id))
            .map(String::from)
            .collect();
        ids.sort();
        ids
    }

    /// The persistable state of a live call.
    pub fn snapshot(&self, call_id: &str) -> Option<CallSnapshot> {
        let call = self.calls.get(call_id)?;
        Some(CallSnapshot {
            call: call.clone(),
            channels: call
                .members
                .iter()
                .filter_map(|m| self.channels.get(m).cloned())
                .collect(),
        })
    }

    /// Takes back a call persisted before a restart of the daemon.
    pub fn restore(&mut self, snapshot: CallSnapshot) {
        let id = snapshot.call.id.clone();
        for chan in snapshot.channels {
            if let Some(bridge) = &chan.bridge {
                self.bridges
                    .entry(bridge.clone())
                    .or_default()
                    .push(chan.id.clone());
            }
            if let Some((base, half)) = &chan.local {
                if let Some(slot) = self.locals.entry(base.clone()).or_default().get_mut(*half) {
                    *slot = Some(chan.id.clone());
                }
            }
            self.channels.insert(chan.id.clone(), chan);
        }
        let mut call = snapshot.call;
        // Event counts of the process that saved it mean nothing here: the first resync
        // judges it, and what happened while nobody listened is the list's to say.
        call.last_seq = 0;
        call.gap = true;
        self.pbx_clock = self.pbx_clock.max(call.last_event_at);
        self.calls.insert(id, call);
    }

    /// Feeds one event; returns what changed for the calls it touches.
    pub fn apply(&mut self, ev: &PbxEvent) -> Vec<CallUpdate> {
        self.pbx_clock = self.pbx_clock.max(ev.at);
        let mut out = Vec::new();
        let owned;
        let call_id: &str = match self.adopt(ev, &mut out) {
            None => return out,
            Some(None) => &ev.call,
            Some(Some(id)) => {
                owned = id;
                &owned
            }
        };
        let mut stages: Vec<CallStage> = Vec::new();
        // Calls whose talkers to recompute; the buffer is kept between events.
        let mut recompute = std::mem::take(&mut self.recompute_buf);
        match &ev.kind {
            PbxEventKind::ChannelCreated {
                name,
                endpoint,
                caller_number,
                exten,
                context,
                ..
            } => {
                self.describe(&ev.channel, name, endpoint.clone());
                if let Some(call) = self.calls.get_mut(call_id) {
                    if ev.channel == call.origin {
                        call.origin_endpoint = endpoint.clone();
                        call.origin_exten = exten.clone();
                        call.origin_from_trunk = context
                            .as_deref()
                            .is_some_and(|c| self.config.trunk_contexts.iter().any(|t| t == c));
                        call.origin_virtual |= is_virtual(name);
                        if call.caller_number.is_none() {
                            call.caller_number = caller_number.clone();
                        }
                    }
                }
            }
            PbxEventKind::CallerKnown { caller_number } => {
                let internal = &self.config.internal;
                if let Some(call) = self.calls.get_mut(call_id) {
                    // The first channel's caller id, as the dialplan or an originate sets
                    // it after the channel appeared (`NewCallerid`): followed until a CRM
                    // effect depends on who the call is from.
                    if ev.channel == call.origin
                        && call.caller_number.as_ref() != Some(caller_number)
                        && (call.caller_number.is_none() || undecided(call))
                    {
                        call.caller_number = Some(caller_number.clone());
                        if call.direction.is_some() && undecided(call) {
                            redecide_direction(call, internal);
                        }
                    }
                }
            }
            PbxEventKind::DialBegin {
                caller_number,
                dialer,
                dest,
                dest_name,
                dest_endpoint,
                dial_string,
            } => {
                self.learn(&ev.channel, call_id, dialer);
                self.ensure_channel(dest, call_id, dest_name, dest_endpoint.clone());
                let internal = &self.config.internal;
                if let Some(call) = self.calls.get_mut(call_id) {
                    call.join(dest);
                    let dest_internal = dest_endpoint
                        .as_deref()
                        .is_some_and(|e| internal.contains(e));
                    if call.caller_number.is_none() && call.direction != Some(Direction::Outbound) {
                        call.caller_number = caller_number.clone();
                    }
                    let number = dial_string.as_deref().and_then(number_of_dial_string);
                    decide_direction(call, internal, dest_internal, number.as_ref());
                    call.legs.push(Leg {
                        channel: dest.clone(),
                        endpoint: dest_endpoint.clone(),
                        internal: dest_internal,
                        result: None,
                        dialer: Some(ev.channel.clone()),
                        number,
                    });
                    if let Some(stage) = ringing(call, dest_endpoint.as_deref(), dest_internal) {
                        stages.push(stage);
                    }
                }
            }
            PbxEventKind::QueueAgentRinging {
                queue,
                dest,
                endpoint,
            } => {
                let internal = &self.config.internal;
                if let Some(call) = self.calls.get_mut(call_id) {
                    call.queue = Some(queue.clone());
                    let internal_ext = endpoint.as_deref().is_some_and(|e| internal.contains(e));
                    decide_direction(call, internal, internal_ext, None);
                    if let Some(stage) = ringing(call, endpoint.as_deref(), internal_ext) {
                        stages.push(stage);
                    }
                    let _ = dest;
                }
            }
            PbxEventKind::DialEnd { dest, outcome, .. } => {
                if let Some(call) = self.calls.get_mut(call_id) {
                    // app_queue sends duplicate DialEnds (NOANSWER then CANCEL): the
                    // first result of a leg stands.
                    if let Some(leg) = call
                        .legs
                        .iter_mut()
                        .rev()
                        .find(|l| &l.channel == dest && l.result.is_none())
                    {
                        leg.result = Some(*outcome);
                        if *outcome == DialOutcome::Answered {
                            call.links.push((ev.channel.clone(), dest.clone()));
                            recompute.push(call_id.into());
                        }
                    }
                }
            }
            PbxEventKind::QueueAgentConnected { queue, dest, .. } => {
                if let Some(call) = self.calls.get_mut(call_id) {
                    call.queue = Some(queue.clone());
                    // Normally the DialEnd ANSWER already linked the agent; this covers
                    // queue setups that do not report dials.
                    if let Some(dest) = dest {
                        if self.channels.contains_key(dest)
                            && !call.links.iter().any(|(_, d)| d == dest)
                        {
                            call.links.push((ev.channel.clone(), dest.clone()));
                            recompute.push(call_id.into());
                        }
                    }
                }
            }
            PbxEventKind::QueueAbandoned { queue } => {
                if let Some(call) = self.calls.get_mut(call_id) {
                    call.queue = Some(queue.clone());
                    call.abandoned = true;
                }
            }
            PbxEventKind::VoicemailStarted { mailbox } => {
                if let Some(call) = self.calls.get_mut(call_id) {
                    if call.voicemail.is_none() {
                        call.voicemail = Some(Voicemail {
                            mailbox: mailbox.to_string(),
                            message: None,
                        });
                    }
                }
            }
            PbxEventKind::DialResult { outcome } => {
                let origin_side = self.is_origin_side(call_id, &ev.channel);
                if let Some(call) = self.calls.get_mut(call_id) {
                    // On the calling side only: a dial by a transfer target says nothing
                    // about the customer's call.
                    if origin_side || call.direction == Some(Direction::Outbound) {
                        call.dial_status = Some(*outcome);
                    }
                }
            }
            PbxEventKind::Recording { path } => {
                if let Some(call) = self.calls.get_mut(call_id) {
                    if call.recording.is_none() && !path.is_empty() {
                        call.recording = Some(path.clone());
                    }
                }
            }
            PbxEventKind::VoicemailLeft { mailbox, message } => {
                if let Some(call) = self.calls.get_mut(call_id) {
                    let vm = call.voicemail.get_or_insert_with(|| Voicemail {
                        mailbox: mailbox.to_string(),
                        message: None,
                    });
                    vm.message = Some(message.clone());
                }
            }
            PbxEventKind::Variable { name, value } => {
                if let Some(call) = self.calls.get_mut(call_id) {
                    if !self
                        .config
                        .campaign_variables
                        .take(&mut call.campaign, name, value)
                    {
                        variable(call, name, value);
                    }
                }
            }
            PbxEventKind::Bridged { bridge } => {
                if let Some(chan) = self.channels.get_mut(&ev.channel) {
                    if let Some(old) = chan.bridge.replace(bridge.clone()) {
                        remove_from(&mut self.bridges, &old, &ev.channel);
                    }
                    chan.bridged_ever = true;
                }
                let members = self.bridges.entry(bridge.clone()).or_default();
                if !members.contains(&ev.channel) {
                    members.push(ev.channel.clone());
                }
                self.calls_in_bridge(bridge, &mut recompute);
                recompute.push(call_id.into());
            }
            PbxEventKind::Unbridged { bridge } => {
                if let Some(chan) = self.channels.get_mut(&ev.channel) {
                    if chan.bridge.as_deref() == Some(bridge.as_str()) {
                        chan.bridge = None;
                    }
                }
                self.calls_in_bridge(bridge, &mut recompute);
                remove_from(&mut self.bridges, bridge, &ev.channel);
                recompute.push(call_id.into());
            }
            PbxEventKind::Originated => {
                let internal = &self.config.internal;
                if let Some(call) = self.calls.get_mut(call_id) {
                    if call.origin == ev.channel && !call.origin_originated {
                        call.origin_originated = true;
                        if call.direction.is_some() && undecided(call) {
                            redecide_direction(call, internal);
                        }
                    }
                }
            }
            PbxEventKind::PairedWith { other } => {
                self.pair(&ev.channel, other);
                if let Some(call) = self.calls.get_mut(call_id) {
                    if call.origin == ev.channel || call.origin == *other {
                        call.origin_virtual = true;
                    }
                }
                recompute.push(call_id.into());
            }
            PbxEventKind::HungUp { seen_as, .. } => {
                // Its last word may be the first that says what it was (after a gap).
                self.learn(&ev.channel, call_id, seen_as);
                let bridge = self.drop_channel(&ev.channel);
                if let Some(bridge) = bridge {
                    self.calls_in_bridge(&bridge, &mut recompute);
                }
                if let Some(call) = self.calls.get_mut(call_id) {
                    call.members.retain(|m| m != &ev.channel);
                }
                recompute.push(call_id.into());
            }
        }
        self.seq += 1;
        if let Some(call) = self.calls.get_mut(call_id) {
            call.last_event_at = call.last_event_at.max(ev.at);
            call.last_seq = self.seq;
        }
        if !matches!(ev.kind, PbxEventKind::CallerKnown { .. }) && !self.dirty.contains(call_id) {
            self.dirty.insert(call_id.into());
        }
        out.extend(self.updates(call_id, ev.at, stages));
        recompute.sort();
        recompute.dedup();
        for id in recompute.drain(..) {
            let stages = self.recompute(&id, ev.at);
            out.extend(self.updates(&id, ev.at, stages));
        }
        self.recompute_buf = recompute;
        if self
            .calls
            .get(call_id)
            .is_some_and(|c| c.members.is_empty())
        {
            out.extend(self.finish(call_id, ev.at));
        }
        out
    }

    /// Marks the moment the PBX was asked for its channel list (see `resync`).
    /// `after_gap`: a new connection, so the live calls may have missed events since the
    /// last one.
    pub fn begin_resync(&mut self, after_gap: bool) {
        self.resync_mark = self.seq;
        self.gone_since_mark = Some(HashSet::default());
        if after_gap {
            for call in self.calls.values_mut() {
                call.gap = true;
            }
        }
    }

    /// Compares the calls we follow with the PBX's own list of channels (after a
    /// connect, and periodically): channels that vanished are dropped and calls left
    /// without channels end (as reconstructed); channels we did not know are taken up
    /// as calls in progress. Only calls with no event since `begin_resync` are judged:
    /// anything newer may postdate the list. `at` is when the list arrived.
    ///
    /// A list only adds what the events did not say; it never undoes what they said. The
    /// bridges and answers of known channels are taken from it only for calls that may
    /// have missed events (a reconnect, a restart), and a bridge only from a list that
    /// shows bridges (FreeSWITCH's does not).
    pub fn resync(&mut self, at: Timestamp, live: &[LiveChannel]) -> Vec<CallUpdate> {
        let mut out = Vec::new();
        let present: HashSet<&ChannelId> = live.iter().map(|l| &l.channel).collect();
        let mark = self.resync_mark;
        let gone = self.gone_since_mark.take().unwrap_or_default();

        // Channels that vanished while we did not hear of it.
        let vanished: Vec<(Id, ChannelId)> = self
            .calls
            .values()
            .filter(|c| c.last_seq <= mark)
            .flat_map(|c| {
                c.members
                    .iter()
                    .filter(|m| !present.contains(m))
                    .map(|m| (c.id.clone(), m.clone()))
                    .collect::<Vec<_>>()
            })
            .collect();
        let mut touched: Vec<Id> = Vec::new();
        for (call_id, channel) in vanished {
            self.drop_channel(&channel);
            if let Some(call) = self.calls.get_mut(&call_id) {
                call.members.retain(|m| m != &channel);
                call.reconstructed = true;
                self.dirty.insert(call_id.clone());
            }
            touched.push(call_id);
        }
        touched.sort();
        touched.dedup();
        for id in touched {
            // The hang-up was not seen: the call's last known moment is its end.
            let end = self.calls.get(&id).map(|c| c.last_event_at).unwrap_or(at);
            let stages = self.recompute(&id, end);
            out.extend(self.updates(&id, end, stages));
            if self.calls.get(&id).is_some_and(|c| c.members.is_empty()) {
                out.extend(self.finish(&id, end));
            }
        }

        // Calls first heard of by a later channel's event (the first channel's creation
        // fell into a gap, so that later channel was taken for the origin): Asterisk
        // names a call after its first channel (Linkedid = that channel's Uniqueid), so
        // the list tells which channel really started it.
        let mut learned: Vec<Id> = Vec::new();
        for l in live.iter().filter(|l| l.channel.0 == l.call) {
            if self.reorigin(l, at) {
                learned.push(l.call.clone());
            }
        }

        // Channels we heard of only by a mid-call event (their creation fell into a gap):
        // the list says what they are; a call that looked internal for want of its far
        // end learns its direction here.
        let half_known: Vec<&LiveChannel> = live
            .iter()
            .filter(|l| {
                self.channels
                    .get(&l.channel)
                    .is_some_and(|c| c.name.is_empty() && c.call == l.call)
            })
            .collect();
        for l in half_known {
            self.describe(&l.channel, &l.name, l.endpoint.clone());
            let is_origin = self
                .calls
                .get(&l.call)
                .is_some_and(|c| c.origin == l.channel);
            if is_origin {
                let from_trunk = l
                    .context
                    .as_deref()
                    .is_some_and(|c| self.config.trunk_contexts.iter().any(|t| t == c));
                let internal = &self.config.internal;
                if let Some(call) = self.calls.get_mut(&l.call) {
                    if call.origin_endpoint.is_none() {
                        call.origin_endpoint = l.endpoint.clone();
                        call.origin_exten = call.origin_exten.take().or_else(|| l.exten.clone());
                        call.caller_number = call
                            .caller_number
                            .take()
                            .or_else(|| l.caller_number.clone());
                        call.origin_from_trunk = from_trunk;
                        // A dial seen before the origin was known was judged as if from
                        // outside: judge it again now that the origin is known.
                        redecide_direction(call, internal);
                    }
                }
            } else if self
                .calls
                .get(&l.call)
                .is_some_and(|c| !c.legs.iter().any(|g| g.channel == l.channel))
            {
                self.attach_live(l, at, &mut out);
            }
            learned.push(l.call.clone());
        }

        // Channels we know: take what changed while we were away (answered, moved
        // between bridges).
        let mut changed: Vec<Id> = learned;
        for l in live {
            let Some(chan) = self.channels.get(&l.channel) else {
                continue;
            };
            let call_id = chan.call.clone();
            // A call with events since the list was asked for knows better than the list
            // (it may have been built before those events), and so does one whose events
            // all reached us.
            if self
                .calls
                .get(&call_id)
                .is_none_or(|c| c.last_seq > mark || !c.gap)
            {
                continue;
            }
            if l.shows_bridge && chan.bridge != l.bridge {
                if let Some(old) = chan.bridge.clone() {
                    remove_from(&mut self.bridges, &old, &l.channel);
                }
                if let Some(new) = &l.bridge {
                    self.bridges
                        .entry(new.clone())
                        .or_default()
                        .push(l.channel.clone());
                }
                if let Some(chan) = self.channels.get_mut(&l.channel) {
                    chan.bridge = l.bridge.clone();
                    chan.bridged_ever |= l.bridge.is_some();
                }
                changed.push(call_id.clone());
            }
            if l.up {
                if let Some(call) = self.calls.get_mut(&call_id) {
                    // Answered while we did not listen: as its dial's end would have said.
                    if let Some(leg) = call
                        .legs
                        .iter_mut()
                        .find(|g| g.channel == l.channel && g.result.is_none())
                    {
                        leg.result = Some(DialOutcome::Answered);
                        if let Some(dialer) = leg.dialer.clone() {
                            call.links.push((dialer, l.channel.clone()));
                        }
                        changed.push(call_id.clone());
                    }
                }
            }
        }
        // The judged calls are whole again: later lists may only add to them.
        for call in self.calls.values_mut().filter(|c| c.last_seq <= mark) {
            call.gap = false;
        }
        changed.sort();
        changed.dedup();
        for id in changed {
            self.dirty.insert(id.clone());
            // It happened after the call's last event; that is the best time we have on
            // the PBX's own clock.
            let when = self.calls.get(&id).map(|c| c.last_event_at).unwrap_or(at);
            let stages = self.recompute(&id, when);
            out.extend(self.updates(&id, when, stages));
        }

        // Channels we do not know: calls that started while we were away.
        let mut unknown: Vec<&LiveChannel> = live
            .iter()
            .filter(|l| {
                !l.hanging_up
                    && !self.channels.contains_key(&l.channel)
                    && !gone.contains(&l.channel)
                    && !self.ended_set.contains(&l.call)
            })
            .collect();
        // A call's origin is the channel it is named after (Asterisk's Linkedid is its
        // first channel's Uniqueid), else its oldest channel.
        unknown.sort_by(|a, b| {
            (b.channel.0 == b.call)
                .cmp(&(a.channel.0 == a.call))
                .then(b.duration_secs.cmp(&a.duration_secs))
                .then(a.channel.cmp(&b.channel))
        });
        let mut resumed: Vec<Id> = Vec::new();
        for l in unknown {
            let started = Timestamp(at.0 - i64::from(l.duration_secs) * 1_000_000);
            if !self.calls.contains_key(&l.call) {
                let mut call = LiveCall::new(&l.call, &l.channel, started);
                call.origin_endpoint = l.endpoint.clone();
                call.origin_exten = l.exten.clone();
                call.caller_number = l.caller_number.clone();
                call.origin_from_trunk = l
                    .context
                    .as_deref()
                    .is_some_and(|c| self.config.trunk_contexts.iter().any(|t| t == c));
                call.reconstructed = true;
                self.calls.insert(l.call.clone(), call);
                resumed.push(l.call.clone());
            }
            self.ensure_channel(&l.channel, &l.call, &l.name, l.endpoint.clone());
            if let Some(bridge) = &l.bridge {
                if let Some(chan) = self.channels.get_mut(&l.channel) {
                    chan.bridge = Some(bridge.clone());
                    chan.bridged_ever = true;
                }
                self.bridges
                    .entry(bridge.clone())
                    .or_default()
                    .push(l.channel.clone());
            }
            self.attach_live(l, at, &mut out);
        }
        for id in resumed {
            self.dirty.insert(id.clone());
            let stages = self.recompute(&id, at);
            out.extend(self.updates(&id, at, stages));
        }
        out
    }

    /// Makes `l`, the channel that started its call by the PBX's list, the call's origin
    /// when a gap made the tracker take a later channel (whose creation it did not see)
    /// for it. The direction is decided again: the former origin becomes a leg when the
    /// list's half-known channels are attached. Returns whether the call changed.
    fn reorigin(&mut self, l: &LiveChannel, at: Timestamp) -> bool {
        let Some(call) = self.calls.get(&l.call) else {
            return false;
        };
        // Either the origin is this channel, known so far only by its id, or a later
        // channel was taken for the origin (a call restored from an older snapshot).
        let undescribed = call.origin == l.channel && call.origin_unseen;
        let misplaced = call.origin != l.channel
            && self
                .channels
                .get(&call.origin)
                .is_some_and(|c| c.name.is_empty());
        if !undescribed && !misplaced {
            return false;
        }
        let from_trunk = l
            .context
            .as_deref()
            .is_some_and(|c| self.config.trunk_contexts.iter().any(|t| t == c));
        if let Some(call) = self.calls.get_mut(&l.call) {
            call.origin = l.channel.clone();
            call.origin_endpoint = l.endpoint.clone();
            call.origin_exten = l.exten.clone();
            call.caller_number = l.caller_number.clone();
            call.origin_from_trunk = from_trunk;
            call.origin_unseen = false;
            call.legs.retain(|g| g.channel != l.channel);
            call.started_at = call
                .started_at
                .min(Timestamp(at.0 - i64::from(l.duration_secs) * 1_000_000));
            call.join(&l.channel);
            call.reconstructed = true;
            // The legs known so far decide anew, as if dialed from the true origin.
            redecide_direction(call, &self.config.internal);
        }
        self.ensure_channel(&l.channel, &l.call, &l.name, l.endpoint.clone());
        if let Some(bridge) = &l.bridge {
            if let Some(chan) = self.channels.get_mut(&l.channel) {
                if chan.bridge.is_none() {
                    chan.bridge = Some(bridge.clone());
                    chan.bridged_ever = true;
                    self.bridges
                        .entry(bridge.clone())
                        .or_default()
                        .push(l.channel.clone());
                }
            }
        }
        self.dirty.insert(l.call.clone());
        true
    }

    /// Makes a channel from the PBX's list a member of its call: a leg of it unless it
    /// is the call's origin (the first dial to an outside party makes the call outbound),
    /// ringing when the list says its device rings.
    fn attach_live(&mut self, l: &LiveChannel, at: Timestamp, out: &mut Vec<CallUpdate>) {
        let internal = &self.config.internal;
        if let Some(call) = self.calls.get_mut(&l.call) {
            call.join(&l.channel);
            if l.channel != call.origin {
                let is_internal = l.endpoint.as_deref().is_some_and(|e| internal.contains(e));
                decide_direction(call, internal, is_internal, None);
                if call.direction == Some(Direction::Outbound) && call.dialed_number.is_none() {
                    // An outgoing trunk channel shows the number it dials as its caller id.
                    call.dialed_number = l
                        .exten
                        .clone()
                        .filter(|e| e != "s")
                        .or_else(|| l.caller_number.clone());
                }
                let dialer = l.dialed_by.clone();
                if l.up {
                    if let Some(dialer) = &dialer {
                        // An answered leg is connected to the leg that dialed it (a list
                        // that shows no bridges says so only this way).
                        call.links.push((dialer.clone(), l.channel.clone()));
                    }
                }
                call.legs.push(Leg {
                    channel: l.channel.clone(),
                    endpoint: l.endpoint.clone(),
                    internal: is_internal,
                    result: l.up.then_some(DialOutcome::Answered),
                    dialer,
                    number: None,
                });
                if l.ringing {
                    if let Some(stage) = ringing(call, l.endpoint.as_deref(), is_internal) {
                        let id = call.id.clone();
                        out.extend(self.updates(&id, at, vec![stage]));
                    }
                }
            }
        }
        if let Some(call) = self.calls.get_mut(&l.call) {
            call.last_event_at = call.last_event_at.max(at);
            self.seq += 1;
            call.last_seq = self.seq;
        }
    }

    /// The PBX restarted: channel ids before now are void, so the memory of ended calls
    /// must not block new calls that reuse them. Live calls end at the next `resync`.
    pub fn pbx_restarted(&mut self) {
        self.ended.clear();
        self.ended_set.clear();
    }

    /// Ends calls that saw no event for `timeout` (a lost hang-up), as reconstructed.
    pub fn sweep(&mut self, now: Timestamp, timeout: std::time::Duration) -> Vec<CallUpdate> {
        let limit = now.0 - i64::try_from(timeout.as_micros()).unwrap_or(i64::MAX);
        let stale: Vec<Id> = self
            .calls
            .values()
            .filter(|c| c.last_event_at.0 < limit)
            .map(|c| c.id.clone())
            .collect();
        let mut out = Vec::new();
        for id in stale {
            if let Some(call) = self.calls.get_mut(&id) {
                call.reconstructed = true;
                let at = call.last_event_at;
                for member in std::mem::take(&mut call.members) {
                    self.drop_channel(&member);
                }
                out.extend(self.finish(&id, at));
            }
        }
        out
    }

    /// Finds or opens the call of the event's channel, moving the channel when the PBX
    /// says it now belongs to another call. A hang-up of a channel we never saw opens
    /// nothing: there is nothing to report about a call seen only ending.
    /// Returns `None` to skip the event, `Some(None)` when the event's own call id is the
    /// channel's call (nearly always; no copy made), `Some(Some(id))` otherwise.
    fn adopt(&mut self, ev: &PbxEvent, out: &mut Vec<CallUpdate>) -> Option<Option<Id>> {
        if let Some(chan) = self.channels.get(&ev.channel) {
            if chan.call == ev.call {
                return Some(None);
            }
            if self.ended_set.contains(ev.call.as_str()) {
                return Some(Some(chan.call.clone()));
            }
            // Asterisk gives every member of a bridge the oldest Linkedid: a channel
            // whose Linkedid changes has joined that call.
            let old = chan.call.clone();
            if let Some(chan) = self.channels.get_mut(&ev.channel) {
                chan.call = ev.call.clone();
            }
            let origin_for_new = !self.calls.contains_key(ev.call.as_str());
            if origin_for_new {
                self.calls
                    .insert(ev.call.clone(), LiveCall::new(&ev.call, &ev.channel, ev.at));
            }
            if let Some(call) = self.calls.get_mut(ev.call.as_str()) {
                call.join(&ev.channel);
            }
            if let Some(old_call) = self.calls.get_mut(&old) {
                old_call.members.retain(|m| m != &ev.channel);
                self.dirty.insert(old.clone());
                if old_call.members.is_empty() {
                    out.extend(self.finish(&old, ev.at));
                } else {
                    let stages = self.recompute(&old, ev.at);
                    out.extend(self.updates(&old, ev.at, stages));
                }
            }
            return Some(None);
        }
        // The hang-up of a call's unseen origin ends it and says what the origin was.
        let unseen_origin = self
            .calls
            .get(ev.call.as_str())
            .is_some_and(|c| c.origin_unseen && c.origin == ev.channel);
        if matches!(
            ev.kind,
            PbxEventKind::HungUp { .. } | PbxEventKind::Unbridged { .. }
        ) && !unseen_origin
        {
            return None;
        }
        if self.ended_set.contains(ev.call.as_str()) {
            return None;
        }
        let call = self.calls.entry(ev.call.clone()).or_insert_with(|| {
            if ev.channel.0 == ev.call {
                LiveCall::new(&ev.call, &ev.channel, ev.at)
            } else {
                // Asterisk names a call after its first channel (Linkedid = that
                // channel's Uniqueid): this later channel is not where the call began.
                let mut call = LiveCall::new(&ev.call, &ChannelId(ev.call.clone()), ev.at);
                call.origin_unseen = true;
                call.reconstructed = true;
                call
            }
        });
        call.join(&ev.channel);
        let name = match &ev.kind {
            PbxEventKind::ChannelCreated { name, .. } => name.clone(),
            _ => Id::default(),
        };
        self.ensure_channel(&ev.channel, &ev.call, &name, None);
        Some(None)
    }

    /// A channel known only by its id (its creation fell into a gap) learns what it is
    /// from an event that shows it; when it is the call's origin, the call learns where
    /// it came from and judges its direction again.
    fn learn(&mut self, channel: &ChannelId, call_id: &str, seen: &SeenAs) {
        if seen.name.is_empty()
            || !self
                .channels
                .get(channel)
                .is_some_and(|c| c.name.is_empty())
        {
            return;
        }
        self.describe(channel, &seen.name, seen.endpoint.clone());
        let from_trunk = seen
            .context
            .as_deref()
            .is_some_and(|c| self.config.trunk_contexts.iter().any(|t| t == c));
        let internal = &self.config.internal;
        if let Some(call) = self.calls.get_mut(call_id) {
            if call.origin == *channel && call.origin_endpoint.is_none() {
                call.origin_endpoint = seen.endpoint.clone();
                call.origin_exten = call.origin_exten.take().or_else(|| seen.exten.clone());
                if call.caller_number.is_none() {
                    call.caller_number = seen.caller_number.clone();
                }
                call.origin_from_trunk = from_trunk;
                call.origin_unseen = false;
                redecide_direction(call, internal);
            }
        }
    }

    fn ensure_channel(&mut self, id: &ChannelId, call: &str, name: &str, endpoint: Option<Id>) {
        if !self.channels.contains_key(id) {
            self.channels.insert(
                id.clone(),
                Chan {
                    id: id.clone(),
                    call: call.into(),
                    name: Id::default(),
                    endpoint: None,
                    local: None,
                    bridge: None,
                    bridged_ever: false,
                },
            );
        }
        if !name.is_empty() {
            self.describe(id, name, endpoint);
        }
    }

    /// Records a channel's name and endpoint, and pairs Local halves by name.
    fn describe(&mut self, id: &ChannelId, name: &str, endpoint: Option<Id>) {
        let Some(chan) = self.channels.get_mut(id) else {
            return;
        };
        if chan.name.is_empty() {
            chan.name = name.into();
        }
        if chan.endpoint.is_none() {
            chan.endpoint = endpoint;
        }
        if chan.local.is_none() {
            if let Some(half) = local_half(name) {
                chan.local = Some(half.clone());
                if let Some(slot) = self.locals.entry(half.0).or_default().get_mut(half.1) {
                    *slot = Some(id.clone());
                }
            }
        }
    }

    /// Makes `a` and `b` the two halves of one pipe (FreeSWITCH loopback), as Local
    /// halves are by name: the walk of who talks goes through them.
    fn pair(&mut self, a: &ChannelId, b: &ChannelId) {
        if a == b
            || ![a, b]
                .iter()
                .all(|c| self.channels.get(*c).is_some_and(|c| c.local.is_none()))
        {
            return;
        }
        let (first, second) = if a <= b { (a, b) } else { (b, a) };
        let base = first.0.clone();
        for (half, id) in [first, second].into_iter().enumerate() {
            if let Some(chan) = self.channels.get_mut(id) {
                chan.local = Some((base.clone(), half));
            }
        }
        self.locals
            .insert(base, [Some(first.clone()), Some(second.clone())]);
    }

    /// The channel is the call's first one, or the other half of it (the half of a
    /// Local or loopback pipe that runs the dialplan).
    fn is_origin_side(&self, call_id: &str, channel: &ChannelId) -> bool {
        let Some(call) = self.calls.get(call_id) else {
            return false;
        };
        if call.origin == *channel {
            return true;
        }
        self.channels
            .get(&call.origin)
            .and_then(|o| o.local.as_ref())
            .and_then(|(base, half)| self.locals.get(base).map(|p| &p[1 - half]))
            .is_some_and(|partner| partner.as_ref() == Some(channel))
    }

    /// Forgets a channel that hung up; returns the bridge it was in.
    fn drop_channel(&mut self, id: &ChannelId) -> Option<Id> {
        let chan = self.channels.remove(id)?;
        if let Some(gone) = self.gone_since_mark.as_mut() {
            gone.insert(id.clone());
        }
        if let Some((base, half)) = &chan.local {
            if let Some(pair) = self.locals.get_mut(base) {
                pair[*half] = None;
                if pair.iter().all(Option::is_none) {
                    self.locals.remove(base);
                }
            }
        }
        if let Some(bridge) = &chan.bridge {
            remove_from(&mut self.bridges, bridge, id);
        }
        chan.bridge
    }

    /// Appends the calls of the channels in `bridge` to `out`.
    fn calls_in_bridge(&self, bridge: &str, out: &mut Vec<Id>) {
        if let Some(members) = self.bridges.get(bridge) {
            out.extend(
                members
                    .iter()
                    .filter_map(|m| self.channels.get(m).map(|c| c.call.clone())),
            );
        }
    }

    /// Who talks with the customer now; opens and closes talk segments accordingly.
    fn recompute(&mut self, call_id: &str, at: Timestamp) -> Vec<CallStage> {
        let Some(call) = self.calls.get(call_id) else {
            return Vec::new();
        };
        let internal = &self.config.internal;
        let direction = call
            .direction
            .unwrap_or(if origin_is_internal(call, internal) {
                Direction::Internal
            } else {
                Direction::Inbound
            });
        let origin = [&call.origin];
        let answered_legs: Vec<&ChannelId>;
        let customers: &[&ChannelId] = match direction {
            Direction::Inbound => &origin,
            Direction::Outbound => {
                answered_legs = call
                    .legs
                    .iter()
                    .filter(|l| !l.internal && l.result == Some(DialOutcome::Answered))
                    .map(|l| &l.channel)
                    .collect();
                &answered_legs
            }
            Direction::Internal => &[],
        };
        let talking = self.reachable_employees(call, customers);
        let mut stages = Vec::new();
        let Some(call) = self.calls.get_mut(call_id) else {
            return stages;
        };
        for seg in call.segments.iter_mut().filter(|s| s.to.is_none()) {
            if !talking.contains(&seg.extension) {
                seg.to = Some(at);
            }
        }
        for ext in &talking {
            if call
                .segments
                .iter()
                .any(|s| s.extension == *ext && s.to.is_none())
            {
                continue;
            }
            // A gap of microseconds (Local optimisation, bridge swaps) is no new turn.
            if let Some(seg) = call.segments.iter_mut().rev().find(|s| s.extension == *ext) {
                if seg.to.is_some_and(|to| at.0 - to.0 < SEGMENT_GAP_US)
                    && call
                        .segments
                        .last()
                        .is_some_and(|last| last.extension == *ext)
                {
                    if let Some(last) = call.segments.last_mut() {
                        last.to = None;
                    }
                    continue;
                }
            }
            call.segments.push(Segment {
                extension: ext.clone(),
                from: at,
                to: None,
            });
        }
        if call.answer.is_none() {
            if let Some(ext) = talking.first() {
                call.answer = Some((ext.clone(), at));
                stages.push(CallStage::Answered {
                    extension: ext.to_string(),
                });
            }
        }
        stages
    }

    /// Employee extensions connected to any of `customers` through bridges, Local
    /// halves and answered dials. Real devices win over Local channels that merely
    /// name an extension.
    fn reachable_employees(&self, call: &LiveCall, customers: &[&ChannelId]) -> Vec<Id> {
        let mut seen: Vec<&ChannelId> = customers
            .iter()
            .copied()
            .filter(|c| self.channels.contains_key(*c))
            .collect();
        let mut queue: Vec<&ChannelId> = seen.clone();
        let mut devices: Vec<Id> = Vec::new();
        let mut locals: Vec<Id> = Vec::new();
        // Neighbours of the current channel; one buffer for the whole walk.
        let mut next: Vec<&ChannelId> = Vec::new();
        while let Some(current) = queue.pop() {
            let Some(chan) = self.channels.get(current) else {
                continue;
            };
            if !customers.contains(&current) {
                // The first channel stands for its extension even when it is a pipe an
                // originate placed for it (its caller id names the extension).
                let ext = chan
                    .endpoint
                    .as_ref()
                    .filter(|e| self.config.internal.contains(e))
                    .or_else(|| {
                        (*current == call.origin)
                            .then(|| origin_extension(call, &self.config.internal))
                            .flatten()
                    });
                if let Some(ext) = ext {
                    let list = if chan.local.is_some() {
                        &mut locals
                    } else {
                        &mut devices
                    };
                    if !list.contains(ext) {
                        list.push(ext.clone());
                    }
                }
            }
            if let Some(members) = chan.bridge.as_ref().and_then(|b| self.bridges.get(b)) {
                next.extend(members.iter());
            }
            if let Some((base, half)) = &chan.local {
                if let Some(Some(partner)) = self.locals.get(base).map(|p| &p[1 - half]) {
                    next.push(partner);
                }
            }
            for (a, b) in &call.links {
                let both_bridged = [a, b]
                    .iter()
                    .all(|c| self.channels.get(*c).is_some_and(|c| c.bridged_ever));
                if both_bridged {
                    continue;
                }
                if a == current {
                    next.push(b);
                } else if b == current {
                    next.push(a);
                }
            }
            for n in next.drain(..) {
                if self.channels.contains_key(n) && !seen.contains(&n) {
                    seen.push(n);
                    queue.push(n);
                }
            }
        }
        if devices.is_empty() {
            locals
        } else {
            devices
        }
    }

    fn updates(&self, call_id: &str, at: Timestamp, stages: Vec<CallStage>) -> Vec<CallUpdate> {
        if stages.is_empty() {
            return Vec::new();
        }
        let header = self.header(call_id);
        stages
            .into_iter()
            .map(|stage| CallUpdate {
                header: header.clone(),
                at,
                stage,
            })
            .collect()
    }

    /// What identifies a live call so far.
    pub fn header_of(&self, call_id: &str) -> Option<CallHeader> {
        self.calls
            .contains_key(call_id)
            .then(|| self.header(call_id))
    }

    fn header(&self, call_id: &str) -> CallHeader {
        let call = self.calls.get(call_id);
        let direction = call
            .map(|c| direction_of(c, &self.config.internal))
            .unwrap_or(Direction::Inbound);
        CallHeader {
            pbx: self.config.pbx.clone(),
            call_id: call_id.to_string(),
            direction,
            customer_number: call
                .and_then(|c| match direction {
                    Direction::Outbound => c
                        .dialed_number
                        .as_deref()
                        .or_else(|| reconstructed_outside_number(c, &self.config.internal)),
                    _ => c.caller_number.as_deref(),
                })
                .map(String::from),
            did: call
                .filter(|_| direction == Direction::Inbound)
                .and_then(|c| c.origin_exten.as_deref())
                .map(String::from),
            started_at: call.map(|c| c.started_at).unwrap_or_default(),
            campaign: call.map(|c| c.campaign.clone()).unwrap_or_default(),
        }
    }

    fn finish(&mut self, call_id: &str, at: Timestamp) -> Option<CallUpdate> {
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

fn round_secs(micros: i64) -> u32 {
    ((micros.max(0) + 500_000) / 1_000_000).min(i64::from(u32::MAX)) as u32
}

fn remove_from(bridges: &mut HashMap<Id, Vec<ChannelId>>, bridge: &str, id: &ChannelId) {
    if let Some(members) = bridges.get_mut(bridge) {
        members.retain(|m| m != id);
        if members.is_empty() {
            bridges.remove(bridge);
        }
    }
}

/// `Local/101@phones-00000001;2` → (`Local/101@phones-00000001`, 1).
fn local_half(name: &str) -> Option<(Id, usize)> {
    if !name.starts_with("Local/") {
        return None;
    }
    let (base, half) = name.rsplit_once(';')?;
    match half {
        "1" => Some((base.into(), 0)),
        "2" => Some((base.into(), 1)),
        _ => None,
    }
}

/// `Local/…;1` and `loopback/…-a`: halves of a pipe through the PBX, not devices.
fn is_virtual(name: &str) -> bool {
    name.starts_with("Local/") || name.starts_with("loopback/")
}

/// No CRM effect depends yet on who the call is from or which way it goes: nobody has
/// been rung (a pop-up) and nobody has answered.
fn undecided(call: &LiveCall) -> bool {
    call.announced.is_empty() && call.answer.is_none() && call.segments.is_empty()
}

/// The employee extension the call's first channel stands for: its device's extension;
/// or, for a Local or loopback half (which no device is behind: an originate's first
/// channel, `Local/<number>@<context>`), the extension its caller id names. `None` for a
/// channel from outside.
fn origin_extension<'c>(call: &'c LiveCall, internal: &InternalExtensions) -> Option<&'c Id> {
    if call.origin_from_trunk {
        return None;
    }
    if let Some(e) = call
        .origin_endpoint
        .as_ref()
        .filter(|e| internal.contains(e))
    {
        return Some(e);
    }
    call.caller_number
        .as_ref()
        .filter(|n| call.origin_virtual && internal.contains(n))
}

fn origin_is_internal(call: &LiveCall, internal: &InternalExtensions) -> bool {
    origin_extension(call, internal).is_some()
}

/// A call that never dialed anyone is inbound when it came from outside.
fn direction_of(call: &LiveCall, internal: &InternalExtensions) -> Direction {
    call.direction
        .unwrap_or(if !origin_is_internal(call, internal) {
            Direction::Inbound
        } else if reconstructed_outside_number(call, internal).is_some() {
            Direction::Outbound
        } else {
            Direction::Internal
        })
}

/// The outside number an extension dialed, for a call we know only in part (a gap hid
/// its dial and its far end hung up meanwhile): the number the extension's channel sits
/// on in the dialplan, when it is a phone number (7+ digits) and no extension of ours.
fn reconstructed_outside_number<'c>(
    call: &'c LiveCall,
    internal: &InternalExtensions,
) -> Option<&'c str> {
    if call.direction.is_some() {
        return None;
    }
    let exten = call.origin_exten.as_deref()?;
    let digits = exten.strip_prefix('+').unwrap_or(exten);
    (digits.len() >= 7 && digits.bytes().all(|b| b.is_ascii_digit()) && !internal.contains(exten))
        .then_some(exten)
}

/// The first dial decides: from outside → inbound; from an extension to an extension →
/// internal; from an extension to anything else → outbound.
fn decide_direction(
    call: &mut LiveCall,
    internal: &InternalExtensions,
    dest_internal: bool,
    dialed: Option<&Id>,
) {
    if call.direction.is_some() {
        return;
    }
    let from_extension = origin_is_internal(call, internal);
    if from_extension && dest_internal && call.origin_originated {
        // An originate that rings the employee's own phone first (`Local/101@…`,
        // `loopback/101/…`): the call is theirs, and the next dial says where it goes.
        return;
    }
    call.direction = Some(match (from_extension, dest_internal) {
        // Not known where the call began, or the PBX placed its first channel (an
        // originate naming no extension of ours), and it went out through a trunk that is
        // not its first channel: the call goes out.
        (false, false) if call.origin_unseen || call.origin_originated => Direction::Outbound,
        (false, _) => Direction::Inbound,
        (true, true) => Direction::Internal,
        (true, false) => Direction::Outbound,
    });
    if call.direction == Some(Direction::Outbound) {
        // The number the extension dialed into the dialplan; not when the first channel
        // sits on an extension of ours (an originate ringing the employee first: the
        // dial then says whom it calls).
        call.dialed_number = call
            .origin_exten
            .clone()
            .filter(|e| e != "s" && !internal.contains(e))
            .or_else(|| dialed.cloned());
    }
}

/// Decides the direction again from the call's legs, after the origin became known.
fn redecide_direction(call: &mut LiveCall, internal: &InternalExtensions) {
    if call.legs.is_empty() {
        return;
    }
    call.direction = None;
    call.dialed_number = None;
    for leg in call.legs.clone() {
        decide_direction(call, internal, leg.internal, leg.number.as_ref());
    }
}

/// A newly ringing employee extension of an inbound call.
fn ringing(call: &mut LiveCall, endpoint: Option<&str>, internal: bool) -> Option<CallStage> {
    if call.direction != Some(Direction::Inbound) || !internal {
        return None;
    }
    let ext = endpoint?;
    if call.announced.iter().any(|a| a == ext) {
        return None;
    }
    call.announced.push(ext.to_string());
    Some(CallStage::Ringing {
        extensions: call.announced.clone(),
        new: vec![ext.to_string()],
    })
}

fn variable(call: &mut LiveCall, name: &str, value: &str) {
    let value = value.trim();
    match name {
        "MIXMONITOR_FILENAME" if !value.is_empty() && call.recording.is_none() => {
            call.recording = Some(value.to_string());
        }
        "VM_MESSAGEFILE" if !value.is_empty() => {
            let vm = call.voicemail.get_or_insert_with(|| Voicemail {
                mailbox: mailbox_of_message(value).unwrap_or_default(),
                message: None,
            });
            vm.message = Some(value.to_string());
        }
        _ => {}
    }
}

/// `/var/spool/asterisk/voicemail/default/102/INBOX/msg0000` → `102@default`.
fn mailbox_of_message(stem: &str) -> Option<String> {
    let mut parts = stem.rsplit('/');
    let _msg = parts.next()?;
    let _folder = parts.next()?;
    let mailbox = parts.next()?;
    let context = parts.next()?;
    Some(format!("{mailbox}@{context}"))
}

fn outcome(call: &LiveCall, direction: Direction) -> Outcome {
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

/// `trunk/89031112233` → `89031112233`; `PJSIP/89031112233@provider` → `89031112233`.
fn number_of_dial_string(dial: &str) -> Option<Id> {
    let tail = dial.rsplit('/').next()?;
    let number = tail.split('@').next()?;
    (!number.is_empty()).then(|| number.into())
}

#[cfg(test)]
mod tests {
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
            include_bytes!(concat!("../../tests/fixtures/asterisk/", $path))
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
            mailbox_of_message("/var/spool/asterisk/voicemail/default/102/INBOX/msg0000")
                .as_deref(),
            Some("102@default")
        );
    }
}

#[cfg(test)]
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
            "../../tests/fixtures/asterisk/iax2/ring_group_second_answers.ami"
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
            "../../tests/fixtures/asterisk/iax2/outbound_answered.ami"
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
            "../../tests/fixtures/asterisk/iax2/outbound_answered.ami"
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
            "../../tests/fixtures/asterisk/iax2/outbound_answered.ami"
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
            include_bytes!("../../tests/fixtures/asterisk/iax2/inbound_missed.ami"),
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
            include_bytes!("../../tests/fixtures/asterisk/iax2/outbound_answered.ami"),
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
