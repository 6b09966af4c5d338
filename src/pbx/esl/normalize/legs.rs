//! The normalizer's memory of live legs: which call each leg belongs to and which leg
//! dialed it, learnt when the leg is created (or from the channel list after a
//! reconnect) and forgotten at its `CHANNEL_DESTROY` (or, when destroys were missed in a
//! disconnect, oldest first).

use crate::pbx::esl::normalize::EslNormalizer;
use crate::pbx::event::{ChannelId, Id, LiveChannel};

/// Legs remembered at most; a leg is forgotten at its `CHANNEL_DESTROY`, so this bounds
/// only what destroys missed during a disconnect would leave behind.
const MAX_LEGS: usize = 100_000;

/// What the normalizer remembers of one live leg.
#[derive(Debug, Clone)]
pub(super) struct Leg {
    pub(super) call: Id,
    /// The leg that dialed this one (its originator, or the queue member for an agent).
    pub(super) dialer: Option<ChannelId>,
    /// Its dial attempt was reported ended (answered or failed).
    pub(super) dial_ended: bool,
    pub(super) hung_up: bool,
    /// Inside the voicemail application: its recordings are voicemail messages.
    pub(super) in_voicemail: bool,
    /// Order of creation, to forget the oldest first.
    pub(super) seq: u64,
}

impl Leg {
    /// A leg of `call` just created (or learnt from a channel list), dialed by `dialer`.
    pub(super) fn new(call: Id, dialer: Option<ChannelId>) -> Leg {
        Leg {
            call,
            dialer,
            dial_ended: false,
            hung_up: false,
            in_voicemail: false,
            seq: 0,
        }
    }
}

impl EslNormalizer {
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

    pub(super) fn remember(&mut self, uuid: Id, mut leg: Leg) {
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
    pub(super) fn call_of(&self, uuid: &str) -> Id {
        self.legs
            .get(uuid)
            .map(|l| l.call.clone())
            .unwrap_or_else(|| uuid.into())
    }
}
