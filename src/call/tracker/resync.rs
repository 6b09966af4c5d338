//! The PBX's own channel list (after a connect, and periodically): a list only adds
//! what the events did not say (a missed hang-up, a channel not heard of), and takes
//! bridges and answers only for calls that may have missed events. Also the stale-call
//! sweep and a PBX restart.

use super::*;

impl CallTracker {
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
            self.seat_in_listed_bridge(l);
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
    pub(super) fn reorigin(&mut self, l: &LiveChannel, at: Timestamp) -> bool {
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
        self.seat_in_listed_bridge(l);
        self.dirty.insert(l.call.clone());
        true
    }

    /// Puts a channel the list shows in a bridge into that bridge, unless the events
    /// placed it in one already.
    pub(super) fn seat_in_listed_bridge(&mut self, l: &LiveChannel) {
        let Some(bridge) = &l.bridge else { return };
        let Some(chan) = self.channels.get_mut(&l.channel) else {
            return;
        };
        if chan.bridge.is_some() {
            return;
        }
        chan.bridge = Some(bridge.clone());
        chan.bridged_ever = true;
        self.bridges
            .entry(bridge.clone())
            .or_default()
            .push(l.channel.clone());
    }

    /// Makes a channel from the PBX's list a member of its call: a leg of it unless it
    /// is the call's origin (the first dial to an outside party makes the call outbound),
    /// ringing when the list says its device rings.
    pub(super) fn attach_live(
        &mut self,
        l: &LiveChannel,
        at: Timestamp,
        out: &mut Vec<CallUpdate>,
    ) {
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
}
