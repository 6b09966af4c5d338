//! What is known of each call during the run, shared by the player that writes its
//! events, the collector that hears of its CRM records, and the progress line.

use std::sync::{Arc, Mutex};
use std::time::Instant;

/// What is known of one call during the run.
#[derive(Debug, Clone, Default)]
pub(super) struct CallTimes {
    pub(super) template: usize,
    pub(super) number: String,
    pub(super) ring_written: Option<Instant>,
    pub(super) hangup_written: Option<Instant>,
    pub(super) popup: Option<Instant>,
    pub(super) history: Option<Instant>,
    pub(super) history_result: Option<String>,
    pub(super) histories: u32,
}

pub(super) type Shared = Arc<Mutex<Vec<CallTimes>>>;

pub(super) fn lock(s: &Shared) -> std::sync::MutexGuard<'_, Vec<CallTimes>> {
    s.lock().unwrap_or_else(|p| p.into_inner())
}
