//! `PbxEvent`: the one vocabulary every PBX is translated into. Asterisk (AMI) and,
//! later, FreeSWITCH (ESL) normalizers produce these; the call tracker consumes them and
//! never sees a protocol frame.

use crate::time::Timestamp;

/// Ids of channels and calls, and the other short texts of an event (channel names,
/// numbers, extensions, bridge ids): up to 24 bytes live inline (Asterisk uniqueids are
/// about 12-20 bytes, extensions and numbers shorter), so reading an event and keeping its
/// fields in the call tracker rarely allocates.
pub type Id = compact_str::CompactString;

/// One channel (call leg) on the PBX: Asterisk's `Uniqueid`.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(transparent)]
pub struct ChannelId(pub Id);

impl std::fmt::Display for ChannelId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// What the PBX told us about one channel, in PBX-neutral terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PbxEvent {
    /// When it happened, by the PBX's clock when it says so.
    pub at: Timestamp,
    /// The call this channel belongs to (Asterisk's `Linkedid`).
    pub call: Id,
    /// The channel the event is about.
    pub channel: ChannelId,
    pub kind: PbxEventKind,
}

/// How a dial attempt to one destination ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum DialOutcome {
    Answered,
    Busy,
    NoAnswer,
    /// The caller gave up, or another destination answered first.
    Cancelled,
    /// Congestion, unavailable channel, invalid number and the like.
    Failed,
    /// Statuses that say nothing about the destination (CONTINUE, GOTO).
    Other,
}

/// What an event says of its channel besides its id. A daemon that missed the
/// channel's creation (a restart's gap) learns what the channel is from it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SeenAs {
    pub name: Id,
    /// The device or extension, read from the name as for `ChannelCreated`.
    pub endpoint: Option<Id>,
    pub caller_number: Option<Id>,
    pub exten: Option<Id>,
    pub context: Option<Id>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PbxEventKind {
    /// A channel appeared. `endpoint` is the device or extension it belongs to, read
    /// from the channel name (`IAX2/101-13051` → `101`, `Local/101@phones-…;1` → `101`);
    /// `exten` is the number it was called on (the DID on an inbound trunk leg).
    ChannelCreated {
        name: Id,
        endpoint: Option<Id>,
        caller_number: Option<Id>,
        caller_name: Option<Id>,
        exten: Option<Id>,
        context: Option<Id>,
    },
    /// Something new is known about the channel's caller id (Newstate, NewCallerid …).
    CallerKnown { caller_number: Id },
    /// The channel (when known) started dialing `dest`.
    DialBegin {
        caller_number: Option<Id>,
        /// The dialing channel as the event shows it (boxed: rare, and events are
        /// moved through channels by value).
        dialer: Box<SeenAs>,
        dest: ChannelId,
        dest_name: Id,
        dest_endpoint: Option<Id>,
        dial_string: Option<Id>,
    },
    /// A dial attempt from the channel to `dest` ended.
    DialEnd {
        dest: ChannelId,
        dest_endpoint: Option<Id>,
        outcome: DialOutcome,
    },
    /// The channel hung up; `cause` is the Q.850 cause code when given.
    HungUp {
        cause: Option<u16>,
        seen_as: Box<SeenAs>,
    },
    /// The channel joined a bridge (it can talk with the bridge's other members).
    Bridged { bridge: Id },
    /// The channel left a bridge.
    Unbridged { bridge: Id },
    /// A queue offered the call to an agent: `dest` is the agent's channel, `endpoint`
    /// the member's extension (from `Interface`).
    QueueAgentRinging {
        queue: Id,
        dest: Option<ChannelId>,
        endpoint: Option<Id>,
    },
    /// A queue agent picked up.
    QueueAgentConnected {
        queue: Id,
        dest: Option<ChannelId>,
        endpoint: Option<Id>,
    },
    /// The caller gave up waiting in a queue.
    QueueAbandoned { queue: Id },
    /// The channel entered voicemail for `mailbox` (`102@default`).
    VoicemailStarted { mailbox: Id },
    /// The channel's dial attempt as a whole ended (Asterisk `DIALSTATUS`): the only
    /// trace of a dial that could not even create a channel (unavailable, congestion).
    DialResult { outcome: DialOutcome },
    /// The PBX started recording the call into `path` (FreeSWITCH `RECORD_START`; on
    /// Asterisk the `MIXMONITOR_FILENAME` variable says it).
    Recording { path: String },
    /// A voicemail message was left in `mailbox` (FreeSWITCH `vm::maintenance`
    /// `leave-message`; on Asterisk the `VM_MESSAGEFILE` variable says it).
    VoicemailLeft { mailbox: Id, message: String },
    /// A channel variable the tracker cares about was set (see `normalize::VARIABLES`).
    Variable { name: Id, value: Id },
    /// The channel and `other` are the two halves of one pipe through the PBX: what
    /// enters one leaves the other (FreeSWITCH's `loopback/X-a` and `-b`, joined by
    /// `other_loopback_leg_uuid`). Asterisk's Local `;1`/`;2` halves are paired by name
    /// and need no such event.
    PairedWith { other: ChannelId },
    /// The PBX placed the channel itself (AMI `Originate`, FreeSWITCH `originate`): no
    /// caller dialed it. A call that begins with such a channel and first dials an outside
    /// number is a call out, whoever its caller id names.
    Originated,
}

/// A channel the PBX reports as existing right now (Asterisk `CoreShowChannel`), used
/// to resume calls after a (re)connect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveChannel {
    pub channel: ChannelId,
    pub call: Id,
    pub name: Id,
    pub endpoint: Option<Id>,
    /// Answered (Asterisk state Up).
    pub up: bool,
    /// Its device is ringing (state Ringing).
    pub ringing: bool,
    pub caller_number: Option<Id>,
    pub exten: Option<Id>,
    pub context: Option<Id>,
    /// The bridge the channel sits in, when the list shows bridges (`shows_bridge`).
    pub bridge: Option<Id>,
    /// Whether the list says which bridge each channel is in. Asterisk's does
    /// (`BridgeId`); FreeSWITCH's `show channels` does not, and its `None` means nothing.
    pub shows_bridge: bool,
    /// The channel that dialed this one, when the list says it (FreeSWITCH names the
    /// A-leg as a dialed leg's `call_uuid`).
    pub dialed_by: Option<ChannelId>,
    /// The channel is hanging up (FreeSWITCH lists it in state `HANGUP` until it is
    /// destroyed): still present, but nothing to take up.
    pub hanging_up: bool,
    /// How long the channel has existed, seconds.
    pub duration_secs: u32,
    pub application: Option<String>,
    pub application_data: Option<String>,
}

/// What a PBX connection hands to its call processor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PbxInput {
    Event(PbxEvent),
    /// We just asked the PBX for its list of channels: events from here on may be newer
    /// than that list. `after_gap`: this connection just began, so events may have been
    /// missed since the previous one (or since this process started): the list is then
    /// the only word on what changed meanwhile.
    ResyncBegin {
        after_gap: bool,
    },
    /// The PBX's list of channels, as asked for at the last `ResyncBegin`; `at` is when
    /// it arrived.
    Resync {
        at: Timestamp,
        channels: Vec<LiveChannel>,
    },
    /// The PBX restarted since the previous connection: every channel id before this is
    /// void.
    Restarted {
        at: Timestamp,
    },
}
