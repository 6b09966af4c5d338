//! Playing the office: each call's chunks written to the simulated PBX's socket at
//! their times, noting when each call rang and hung up.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::BytesMut;

use super::calls::{lock, Shared};
use crate::tools::load::mix::{self, CallCopy, Template};
use crate::tools::sim::ami::AmiSim;
use crate::tools::sim::esl::EslSim;

/// The simulated PBX's socket.
pub(super) enum Wire {
    Ami(AmiSim),
    Esl(EslSim),
}

impl Wire {
    fn send_raw(&self, bytes: bytes::Bytes) {
        match self {
            Wire::Ami(s) => s.send_raw(bytes),
            Wire::Esl(s) => s.send_raw(bytes),
        };
    }

    pub(super) async fn wait_for_logins(&self, n: u64, within: Duration) -> bool {
        match self {
            Wire::Ami(s) => s.wait_for_logins(n, within).await,
            Wire::Esl(s) => s.wait_for_logins(n, within).await,
        }
    }

    pub(super) fn addr(&self) -> SocketAddr {
        match self {
            Wire::Ami(s) => s.addr(),
            Wire::Esl(s) => s.addr(),
        }
    }

    pub(super) fn stop(&self) {
        match self {
            Wire::Ami(s) => s.stop(),
            Wire::Esl(s) => s.stop(),
        }
    }

    /// The marker every event of this protocol starts its name with.
    fn event_marker(&self) -> &'static [u8] {
        match self {
            Wire::Ami(_) => b"Event: ",
            Wire::Esl(_) => b"Event-Name: ",
        }
    }
}

/// Writes the calls' chunks to the PBX socket at their times; returns the events sent.
#[allow(clippy::too_many_arguments)]
pub(super) async fn play(
    ami: &Wire,
    templates: &[Template],
    kinds: &[usize],
    starts: &[std::time::Duration],
    speed: f64,
    shared: &Shared,
    live: &AtomicUsize,
    ended: &AtomicUsize,
) -> usize {
    use std::cmp::Reverse;
    use std::collections::BinaryHeap;
    /// Calls are built this long before they start (building one costs a copy of it).
    const LOOKAHEAD: Duration = Duration::from_millis(200);
    let t0 = tokio::time::Instant::now();
    let mut heap: BinaryHeap<Reverse<(Duration, usize)>> = BinaryHeap::new();
    let mut copies: HashMap<usize, (CallCopy, usize)> = HashMap::new();
    let mut next_call = 0;
    let mut events = 0;
    loop {
        let now = t0.elapsed();
        while next_call < starts.len() && starts[next_call] <= now + LOOKAHEAD {
            let n = next_call;
            let copy = templates[kinds[n]].copy(n, &mix::national_number(n));
            let first = starts[n] + copy.chunks[0].0.div_f64(speed);
            heap.push(Reverse((first, n)));
            copies.insert(n, (copy, 0));
            next_call += 1;
        }
        let mut batch = BytesMut::new();
        let mut rang = Vec::new();
        let mut hung_up = Vec::new();
        while let Some(Reverse((due, n))) = heap.peek().copied() {
            if due > now {
                break;
            }
            heap.pop();
            let Some((copy, next)) = copies.get_mut(&n) else {
                continue;
            };
            let (_, bytes) = &copy.chunks[*next];
            if *next == 0 {
                live.fetch_add(1, Ordering::Relaxed);
            }
            events += count_events(bytes, ami.event_marker());
            batch.extend_from_slice(bytes);
            if copy.ring_chunk == Some(*next) {
                rang.push(n);
            }
            if copy.hangup_chunk == *next {
                hung_up.push(n);
            }
            *next += 1;
            if let Some((at, _)) = copy.chunks.get(*next) {
                heap.push(Reverse((starts[n] + at.div_f64(speed), n)));
            } else {
                copies.remove(&n);
                live.fetch_sub(1, Ordering::Relaxed);
                ended.fetch_add(1, Ordering::Relaxed);
            }
        }
        if !batch.is_empty() {
            let at = Instant::now();
            ami.send_raw(batch.freeze());
            if !rang.is_empty() || !hung_up.is_empty() {
                let mut calls = lock(shared);
                for n in rang {
                    calls[n].ring_written.get_or_insert(at);
                }
                for n in hung_up {
                    calls[n].hangup_written = Some(at);
                }
            }
        }
        let next_due = heap
            .peek()
            .map(|Reverse((due, _))| *due)
            .into_iter()
            .chain(starts.get(next_call).map(|s| s.saturating_sub(LOOKAHEAD)))
            .min();
        match next_due {
            Some(due) => tokio::time::sleep_until(t0 + due).await,
            None => break,
        }
    }
    events
}

fn count_events(bytes: &[u8], marker: &[u8]) -> usize {
    bytes.windows(marker.len()).filter(|w| *w == marker).count()
}
