//! Steps held back: those of calls this process knows only in part while another
//! process follows the same PBX and may know them whole.

use std::collections::HashSet;
use std::time::Duration;

use tracing::{debug, info};

use crate::call::{CallStage, CallTracker, CallUpdate};

/// The longest the steps of a call known only in part are held back while another
/// process follows the PBX (see `Held`). Past it they are stored: late rather than
/// lost, and the store keeps the first word on each step, so another process's earlier
/// one stands.
pub(super) const HOLD_PARTIAL: Duration = Duration::from_secs(60);

/// How often held steps are looked at (are we alone now?).
pub(super) const HOLD_LOOK_EVERY: Duration = Duration::from_secs(1);

/// Steps of calls this process knows only in part, held back while another process
/// follows the same PBX: calls taken up mid-call from the PBX's list or a mid-call event,
/// and calls taken back from the store that the other process follows (this process
/// started while they were in progress). That process knows them whole; the store keeps
/// the first word on each step, so this one's must come after. They are let go once no
/// other process follows the PBX (it stopped, or was killed), or after `HOLD_PARTIAL`.
/// A held call's later steps queue behind its first, so they reach the store in order.
#[derive(Default)]
pub(super) struct Held {
    pub(super) queue: std::collections::VecDeque<(tokio::time::Instant, CallUpdate)>,
    /// Held steps per call.
    pub(super) calls: std::collections::HashMap<String, usize>,
    /// Live calls taken back from the store while another process followed them.
    pub(super) others_calls: HashSet<String>,
}

impl Held {
    /// Holds `update` back (`None`) when its call is known only in part and another
    /// process may know it whole, or when earlier steps of its call are held.
    pub(super) fn admit(
        &mut self,
        update: CallUpdate,
        tracker: &CallTracker,
        company: bool,
    ) -> Option<CallUpdate> {
        let id = &update.header.call_id;
        let theirs = match &update.stage {
            // The call is gone from the tracker: its summary says how it was known.
            CallStage::Ended(s) => s.reconstructed || self.others_calls.remove(id),
            _ => self.is_theirs(tracker, id),
        };
        let queued = self.calls.contains_key(id);
        if !(queued || company && theirs) {
            return Some(update);
        }
        if self.queue.is_empty() {
            info!(pbx = %update.header.pbx, hold = ?HOLD_PARTIAL,
                  "calls known here only in part while another process follows this PBX: their steps wait for that process's word");
        }
        if !queued {
            debug!(pbx = %update.header.pbx, call_id = %id, hold = ?HOLD_PARTIAL,
                  "a call known only in part while another process follows this PBX: its steps wait for that process's word");
        }
        *self.calls.entry(id.clone()).or_default() += 1;
        self.queue
            .push_back((tokio::time::Instant::now() + HOLD_PARTIAL, update));
        None
    }

    /// The call is known here only in part, or was taken back while another process
    /// followed it.
    pub(super) fn is_theirs(&self, tracker: &CallTracker, id: &str) -> bool {
        self.others_calls.contains(id) || tracker.known_in_part(id)
    }

    pub(super) fn next_due(&self) -> Option<tokio::time::Instant> {
        self.queue
            .front()
            .map(|(at, _)| (*at).min(tokio::time::Instant::now() + HOLD_LOOK_EVERY))
    }

    /// The held steps to let go, in order: all of them once this process is `alone`,
    /// else those held for `HOLD_PARTIAL`.
    pub(super) fn due(&mut self, alone: bool) -> Vec<CallUpdate> {
        let now = tokio::time::Instant::now();
        let mut out = Vec::new();
        while self
            .queue
            .front()
            .is_some_and(|(at, _)| alone || *at <= now)
        {
            if let Some((_, update)) = self.queue.pop_front() {
                self.release(&update.header.call_id);
                out.push(update);
            }
        }
        out
    }

    pub(super) fn drain(&mut self) -> Vec<CallUpdate> {
        self.calls.clear();
        self.queue.drain(..).map(|(_, u)| u).collect()
    }

    pub(super) fn release(&mut self, id: &str) {
        if let Some(n) = self.calls.get_mut(id) {
            *n -= 1;
            if *n == 0 {
                self.calls.remove(id);
            }
        }
    }
}
