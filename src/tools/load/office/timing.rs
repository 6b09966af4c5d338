//! The CRM side of the measure: when each pop-up, history record and request reached the
//! CRM simulator, and how much later than the CRM's rate limit forced each history came.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::calls::{lock, Shared};
use super::daemon::PBX_NAME;
use crate::tools::sim::retailcrm::{Observed, RateLimit};

/// One call's wait for its history record.
#[derive(Debug, Clone, Copy)]
pub(super) struct HistoryWait {
    /// Which kind of call (the mix's template).
    pub(super) kind: usize,
    pub(super) hangup: Instant,
    pub(super) history: Instant,
}

/// A history record this much later than forced counts as late.
pub const LATE_AFTER: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(super) struct Lateness {
    pub(super) late: usize,
    pub(super) worst: Duration,
}

/// How much later than forced each call's history came. What is forced: the call's own
/// round trips (the fastest call of its kind in the run took that long, so no call of
/// the kind can be faster), or the time the CRM's rate limit needed to let through the
/// requests it took while the call waited (on either budget), whichever is longer. Any
/// wait beyond both is time the CRM's budget had room and the call was not sent: late
/// beyond what the limit forces when more than `LATE_AFTER`.
pub(super) fn lateness(
    waits: &[HistoryWait],
    general: &[Instant],
    telephony: &[Instant],
    limit: Option<RateLimit>,
) -> Lateness {
    let mut floor: HashMap<usize, Duration> = HashMap::new();
    for w in waits {
        let took = w.history.saturating_duration_since(w.hangup);
        floor
            .entry(w.kind)
            .and_modify(|f| *f = (*f).min(took))
            .or_insert(took);
    }
    let within = |times: &[Instant], from: Instant, to: Instant| {
        times.partition_point(|t| *t <= to) - times.partition_point(|t| *t < from)
    };
    let mut out = Lateness::default();
    for w in waits {
        let took = w.history.saturating_duration_since(w.hangup);
        let budget = match limit {
            Some(l) => Duration::from_secs_f64(
                (within(general, w.hangup, w.history) as f64 / f64::from(l.per_sec.max(1))).max(
                    within(telephony, w.hangup, w.history) as f64
                        / f64::from(l.telephony_per_sec.max(1)),
                ),
            ),
            None => Duration::ZERO,
        };
        let forced = floor.get(&w.kind).copied().unwrap_or_default().max(budget);
        let later = took.saturating_sub(forced);
        out.worst = out.worst.max(later);
        if later > LATE_AFTER {
            out.late += 1;
        }
    }
    out
}

/// When the CRM let each request through, by rate-limit budget.
#[derive(Debug, Default)]
pub(super) struct RequestTimes {
    pub(super) general: Vec<Instant>,
    pub(super) telephony: Vec<Instant>,
    /// By method and path.
    pub(super) counts: std::collections::BTreeMap<String, usize>,
}

/// Records when each pop-up and each history record reached the CRM, and when every
/// request did.
pub(super) async fn collect(
    mut observed: tokio::sync::mpsc::UnboundedReceiver<Observed>,
    shared: Shared,
    requests: Arc<Mutex<RequestTimes>>,
) {
    let index = |external_id: &Option<String>| -> Option<usize> {
        let id = external_id.as_deref()?;
        id.strip_prefix(&format!("cb-{PBX_NAME}-"))?
            .rsplit_once('-')?
            .1
            .parse()
            .ok()
    };
    while let Some(o) = observed.recv().await {
        if let Observed::Request {
            arrived,
            telephony,
            request,
        } = o
        {
            let mut r = requests.lock().unwrap_or_else(|p| p.into_inner());
            match telephony {
                true => r.telephony.push(arrived),
                false => r.general.push(arrived),
            }
            *r.counts.entry(request).or_default() += 1;
            continue;
        }
        let mut calls = lock(&shared);
        match o {
            Observed::CallEvent {
                arrived,
                r#type,
                call_external_id,
            } if r#type == "in" => {
                if let Some(c) = index(&call_external_id).and_then(|n| calls.get_mut(n)) {
                    c.popup.get_or_insert(arrived);
                }
            }
            Observed::CallEvent { .. } => {}
            Observed::CallUploaded {
                arrived,
                external_id,
                result,
            } => {
                if let Some(c) = index(&external_id).and_then(|n| calls.get_mut(n)) {
                    c.history.get_or_insert(arrived);
                    c.history_result = result;
                    c.histories += 1;
                }
            }
            Observed::Request { .. } => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_history_is_late_only_beyond_its_own_round_trips_and_the_limits_pace() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let wait = |kind, from, to| HistoryWait {
            kind,
            hangup: at(from),
            history: at(to),
        };
        let limit = Some(RateLimit {
            per_sec: 10,
            telephony_per_sec: 40,
        });
        // Kind 0 takes at least 200 ms (its round trips); kind 1 at least 100 ms.
        let fast = [wait(0, 0, 200), wait(1, 0, 100)];
        assert_eq!(lateness(&fast, &[], &[], limit).late, 0);
        // 3 s for a kind-0 call while the CRM let 30 general requests through: the
        // limit (10/s) forced those 3 s.
        let busy: Vec<Instant> = (0..30).map(|i| at(1000 + i * 100)).collect();
        let waits = [wait(0, 0, 200), wait(0, 1000, 4000)];
        let l = lateness(&waits, &busy, &[], limit);
        assert_eq!(l.late, 0, "{l:?}");
        // The same 3 s with only 5 requests let through: the CRM had room, 2.5 s late.
        let idle: Vec<Instant> = (0..5).map(|i| at(1000 + i * 100)).collect();
        let l = lateness(&waits, &idle, &[], limit);
        assert_eq!(l.late, 1);
        assert_eq!(l.worst, Duration::from_millis(2500));
        // Without a limit only the round trips are forced.
        let l = lateness(&waits, &busy, &[], None);
        assert_eq!((l.late, l.worst), (1, Duration::from_millis(2800)));
        // Within LATE_AFTER of what was forced is not late.
        let l = lateness(&[wait(1, 0, 100), wait(1, 0, 900)], &[], &[], None);
        assert_eq!((l.late, l.worst), (0, Duration::from_millis(800)));
    }
}
