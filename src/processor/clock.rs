//! The PBX's clock as this process best knows it: staleness and channel lists are judged
//! by the PBX's own time, not this host's.

use crate::call::CallTracker;
use crate::time::Timestamp;

/// The PBX's clock as best known here: its latest event time, moved on by the time that
/// passed on ours since. Calls are judged stale and lists of channels are dated on it,
/// so a PBX whose clock differs from this host's (or recorded calls replayed) is judged
/// by its own time.
#[derive(Default)]
pub(super) struct PbxClock {
    pub(super) seen: Option<(Timestamp, tokio::time::Instant)>,
}

impl PbxClock {
    pub(super) fn observe(&mut self, tracker: &CallTracker) {
        let latest = tracker.pbx_clock();
        if latest.0 > 0 && self.seen.is_none_or(|(t, _)| latest > t) {
            self.seen = Some((latest, tokio::time::Instant::now()));
        }
    }

    pub(super) fn now(&mut self, tracker: &CallTracker) -> Timestamp {
        self.observe(tracker);
        match self.seen {
            Some((t, when)) => Timestamp(t.0 + when.elapsed().as_micros() as i64),
            None => Timestamp::now(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    use crate::call::TrackerConfig;
    use crate::pbx::ami::normalize::normalize;
    use crate::pbx::ami::{AmiCodec, AmiItem};
    use tokio_util::codec::Decoder;

    /// A call restored after a restart is judged by the PBX's clock: a PBX whose clock is
    /// hours behind ours (or a replayed recording) does not make every call look stale.
    #[tokio::test]
    async fn staleness_is_judged_on_the_pbx_clock() {
        // Half a call, recorded hours ago by the PBX's clock.
        let bytes = include_bytes!("../../tests/fixtures/asterisk/iax2/inbound_answered.ami");
        let mut codec = AmiCodec::new();
        let mut buf = bytes::BytesMut::from(&bytes[..]);
        let mut events = Vec::new();
        while let Ok(Some(item)) = codec.decode(&mut buf) {
            if let AmiItem::Frame(f) = item {
                if let Ok(ev) = normalize(&f, Timestamp(0)) {
                    events.push(ev);
                }
            }
        }
        let mut before = CallTracker::new(TrackerConfig::default());
        for e in &events[..events.len() / 2] {
            before.apply(e);
        }
        let snapshots: Vec<_> = before
            .take_dirty()
            .iter()
            .filter_map(|id| before.snapshot(id))
            .collect();
        assert_eq!(snapshots.len(), 1);
        let mut after = CallTracker::new(TrackerConfig::default());
        for s in snapshots {
            after.restore(s);
        }
        let mut clock = PbxClock::default();
        let now = clock.now(&after);
        assert!(
            Timestamp::now().0 - now.0 > 3_600_000_000,
            "the recording's clock is hours behind this one"
        );
        assert!(after.sweep(now, Duration::from_secs(6 * 3600)).is_empty());
        assert_eq!(after.live_calls(), 1, "the call goes on");
        // By our own clock it would have been ended as stale.
        assert_eq!(
            after
                .sweep(Timestamp::now(), Duration::from_secs(3600))
                .len(),
            1
        );
    }
}
