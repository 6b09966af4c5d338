//! Applying one `PbxEvent`: finding or opening the call of its channel, describing
//! channels, pairing the halves of Local and loopback pipes, and dropping channels that
//! hung up. What the event changes in who talks is worked out in `talk`.

use super::*;

impl CallTracker {
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

    /// Finds or opens the call of the event's channel, moving the channel when the PBX
    /// says it now belongs to another call. A hang-up of a channel we never saw opens
    /// nothing: there is nothing to report about a call seen only ending.
    /// Returns `None` to skip the event, `Some(None)` when the event's own call id is the
    /// channel's call (nearly always; no copy made), `Some(Some(id))` otherwise.
    pub(super) fn adopt(&mut self, ev: &PbxEvent, out: &mut Vec<CallUpdate>) -> Option<Option<Id>> {
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
    pub(super) fn learn(&mut self, channel: &ChannelId, call_id: &str, seen: &SeenAs) {
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

    pub(super) fn ensure_channel(
        &mut self,
        id: &ChannelId,
        call: &str,
        name: &str,
        endpoint: Option<Id>,
    ) {
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
    pub(super) fn describe(&mut self, id: &ChannelId, name: &str, endpoint: Option<Id>) {
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
    pub(super) fn pair(&mut self, a: &ChannelId, b: &ChannelId) {
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
    pub(super) fn is_origin_side(&self, call_id: &str, channel: &ChannelId) -> bool {
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
    pub(super) fn drop_channel(&mut self, id: &ChannelId) -> Option<Id> {
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
    pub(super) fn calls_in_bridge(&self, bridge: &str, out: &mut Vec<Id>) {
        if let Some(members) = self.bridges.get(bridge) {
            out.extend(
                members
                    .iter()
                    .filter_map(|m| self.channels.get(m).map(|c| c.call.clone())),
            );
        }
    }
}

pub(super) fn remove_from(bridges: &mut HashMap<Id, Vec<ChannelId>>, bridge: &str, id: &ChannelId) {
    if let Some(members) = bridges.get_mut(bridge) {
        members.retain(|m| m != id);
        if members.is_empty() {
            bridges.remove(bridge);
        }
    }
}

/// `Local/101@phones-00000001;2` → (`Local/101@phones-00000001`, 1).
pub(super) fn local_half(name: &str) -> Option<(Id, usize)> {
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
pub(super) fn is_virtual(name: &str) -> bool {
    name.starts_with("Local/") || name.starts_with("loopback/")
}

pub(super) fn variable(call: &mut LiveCall, name: &str, value: &str) {
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
pub(super) fn mailbox_of_message(stem: &str) -> Option<String> {
    let mut parts = stem.rsplit('/');
    let _msg = parts.next()?;
    let _folder = parts.next()?;
    let mailbox = parts.next()?;
    let context = parts.next()?;
    Some(format!("{mailbox}@{context}"))
}
