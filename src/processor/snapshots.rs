//! Live-call snapshots: which calls changed since their last one, and when the next round
//! is due. A snapshot lets a restarted process (or one beside another) know a call in
//! progress.

use std::collections::HashSet;
use std::time::Duration;

use super::{Staged, WriteBatch};
use crate::call::CallTracker;
use crate::store::Commit;

/// Live-call snapshots are written at most this often per call (and whenever the call
/// reaches a new stage). A snapshot only spares the resync some work after a crash, so a
/// little staleness costs nothing, while writing one per event batch would make the
/// store, not the PBX, set the pace (on PostgreSQL every statement is a round trip).
pub(super) const SNAPSHOT_EVERY: Duration = Duration::from_secs(5);

/// A batch for the storing half: the staged updates and the live-call snapshots due.
pub(super) fn with_snapshots(
    tracker: &mut CallTracker,
    snapshots: &mut SnapshotSchedule,
    updates: Vec<Staged>,
    skip: impl Fn(&CallTracker, &str) -> bool,
) -> WriteBatch {
    let staged: HashSet<String> = updates
        .iter()
        .map(|s| s.update.header.call_id.clone())
        .collect();
    let mut batch = WriteBatch {
        updates,
        snapshots: Vec::new(),
    };
    for call_id in snapshots.take(tracker, &staged) {
        if skip(tracker, &call_id) {
            continue;
        }
        if let (Some(snapshot), Some(header)) =
            (tracker.snapshot(&call_id), tracker.header_of(&call_id))
        {
            if let Ok(state) = serde_json::to_string(&snapshot) {
                batch.snapshots.push(Commit::Snapshot { header, state });
            }
        }
    }
    batch
}

/// Which live calls have changed since their last snapshot, and when the next round of
/// snapshots is due.
#[derive(Default)]
pub(super) struct SnapshotSchedule {
    pub(super) dirty: HashSet<String>,
    pub(super) last: Option<tokio::time::Instant>,
}

impl SnapshotSchedule {
    /// How long until the dirty calls' snapshots are due (`None`: nothing to write).
    pub(super) fn due_in(&self) -> Option<Duration> {
        if self.dirty.is_empty() {
            return None;
        }
        Some(match self.last {
            Some(last) => SNAPSHOT_EVERY.saturating_sub(last.elapsed()),
            None => Duration::ZERO,
        })
    }

    /// The calls whose snapshot goes into this write: all dirty ones when due, else only
    /// those that reached a new stage in it.
    pub(super) fn take(
        &mut self,
        tracker: &mut CallTracker,
        staged: &HashSet<String>,
    ) -> Vec<String> {
        self.dirty.extend(tracker.take_dirty());
        if self.due_in() == Some(Duration::ZERO) {
            self.last = Some(tokio::time::Instant::now());
            return self.dirty.drain().collect();
        }
        let now: Vec<String> = self
            .dirty
            .iter()
            .filter(|id| staged.contains(*id))
            .cloned()
            .collect();
        for id in &now {
            self.dirty.remove(id);
        }
        now
    }
}
