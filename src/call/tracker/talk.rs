//! Who talks with the customer: the graph of channels (bridges, Local and loopback
//! halves, answered dials) walked from the customer's side, and the talk segments each
//! change of it opens and closes.

use super::*;

impl CallTracker {
    /// Who talks with the customer now; opens and closes talk segments accordingly.
    pub(super) fn recompute(&mut self, call_id: &str, at: Timestamp) -> Vec<CallStage> {
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
    pub(super) fn reachable_employees(&self, call: &LiveCall, customers: &[&ChannelId]) -> Vec<Id> {
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
}
