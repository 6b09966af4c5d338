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
//!
//! This file holds the tracker's state; `apply` reads one event, `direction` decides
//! which way a call goes and whose it is, `talk` works out who talks, `ending` makes
//! the summary of a call that ended, and `resync` compares the calls with the PBX's own
//! channel list.

use std::collections::VecDeque;

use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};

use serde::{Deserialize, Serialize};

use crate::call::{
    CallHeader, CallStage, CallSummary, CallUpdate, Campaign, CampaignVariables, Direction,
    InternalExtensions, Outcome, Talker, Voicemail,
};
use crate::pbx::event::{ChannelId, DialOutcome, Id, LiveChannel, PbxEvent, PbxEventKind, SeenAs};
use crate::time::Timestamp;

mod apply;
mod direction;
mod ending;
mod resync;
mod talk;
#[cfg(test)]
mod tests;

use apply::remove_from;
use direction::{
    decide_direction, direction_of, number_of_dial_string, origin_extension, origin_is_internal,
    reconstructed_outside_number, redecide_direction, ringing, undecided,
};

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
}
