//! Express pop-ups: a ringing call's pop-up, when it can be decided from memory, is sent
//! the moment the call processor reads the ringing, while the call's update is still on
//! its way to the store. The manager's screen then waits for no disk: every store write
//! about the pop-up comes after its request, not before.
//!
//! Nothing is lost by it. The pop-up is stored with the call's update, claimed by this
//! process (so no other worker sends it meanwhile), and its answer is recorded like any
//! delivery's: a failure is retried by the outbox, a refusal parked. If the process dies
//! after the request and before the answer is recorded, the claim is taken over "in
//! doubt", and the outbox shows the pop-up again only while the call has not ended. If it
//! dies before the update is stored, the call is resumed from the PBX as any other.
//!
//! The lane exists while the outbox delivers (`Outbox::run`); without it, or when its
//! slots are full, the ringing decision is stored and made by the outbox as usual.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, Instrument};

use super::settle::{hand_to_writer, settle, DeliveryError};
use super::DeliveryOptions;
use crate::actions::{CrmAction, Moment};
use crate::crm::CrmClient;
use crate::store::{AttemptResult, Claim, PendingAction, Settled};
use crate::time::Timestamp;

/// What the express lane needs to send and record, installed by `Outbox::run`.
#[derive(Debug)]
pub(crate) struct ExpressLane {
    pub crm: CrmClient,
    pub options: DeliveryOptions,
    pub worker: String,
    pub results: mpsc::Sender<AttemptResult>,
    /// At most this many express requests in flight; beyond, pop-ups take the stored path.
    pub slots: Arc<Semaphore>,
    pub tasks: TaskTracker,
    /// Cancelled when shutdown's grace period is over.
    pub stop: CancellationToken,
    /// The live calls' express state: one call's pop-ups go out in order.
    pub calls: Calls,
}

/// Live calls by id, with how their pop-ups go.
pub(crate) type Calls = Arc<std::sync::Mutex<std::collections::HashMap<String, CallLane>>>;

/// How a live call's pop-ups go. Once one of them took the stored path, all its later
/// ones do: the store keeps a call's actions in order, and an express pop-up would pass
/// it. While an express pop-up is on its way, the next takes the stored path (where the
/// store keeps it behind the first, stored with a lower id).
#[derive(Debug, Default)]
pub(crate) struct CallLane {
    in_flight: bool,
    stored: bool,
}

/// Given to the call processor with the pop-ups on their way: the claim to store them
/// under, and where to say which ids the store gave them.
#[derive(Debug)]
pub struct ExpressTicket {
    claim: Claim,
    ids: oneshot::Sender<Vec<i64>>,
}

impl ExpressTicket {
    pub fn claim(&self) -> Claim {
        self.claim.clone()
    }

    /// The pop-ups are stored (with these ids, in the order they were handed over; none
    /// when the store already had this step of the call): their answers can be recorded.
    pub fn stored(self, ids: Vec<i64>) {
        let _ = self.ids.send(ids);
    }
}

impl ExpressLane {
    /// Replaces a ringing decision in `actions` by the pop-ups it makes and sends them
    /// now, when the decision can be made from memory and `allowed` (this process is the
    /// PBX's one follower). `None` leaves `actions` as they were (stored as usual), or
    /// empty when the decision makes nothing.
    pub fn send_now(
        &self,
        call_id: &str,
        actions: &mut Vec<CrmAction>,
        span: &tracing::Span,
        allowed: bool,
    ) -> Option<ExpressTicket> {
        let [CrmAction::Decide(request)] = actions.as_slice() else {
            return None;
        };
        if !matches!(request.moment, Moment::Ringing { .. }) {
            return None;
        }
        let mut calls = self.calls.lock().unwrap_or_else(|p| p.into_inner());
        let lane = calls.entry(call_id.to_string()).or_default();
        let decided = match &self.options.decider {
            Some(decider) if allowed && !lane.stored && !lane.in_flight => {
                decider.decide_ringing_now(request)
            }
            _ => None,
        };
        let slot = match decided {
            Some(d) if d.is_empty() => {
                // Nothing to send, nothing stored.
                actions.clear();
                return None;
            }
            Some(d) if d.iter().all(|a| matches!(a, CrmAction::CallEvent(_))) => self
                .slots
                .clone()
                .try_acquire_owned()
                .ok()
                .map(|slot| (slot, d)),
            _ => None,
        };
        let Some((slot, decided)) = slot else {
            lane.stored = true;
            return None;
        };
        lane.in_flight = true;
        drop(calls);
        let claim = Claim {
            worker: self.worker.clone(),
            until: Timestamp(Timestamp::now().0 + self.options.lease.as_micros() as i64),
        };
        let (ids, stored) = oneshot::channel();
        let (calls, id) = (self.calls.clone(), call_id.to_string());
        // Once the requests are answered: the slot is free and the call's next pop-up
        // may go ahead too (this one is no longer on its way; its record may be).
        let answered = move || {
            drop(slot);
            let mut calls = calls.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(lane) = calls.get_mut(&id) {
                lane.in_flight = false;
            }
        };
        self.tasks.spawn(
            send(
                call_id.to_string(),
                decided.clone(),
                stored,
                answered,
                self.crm.clone(),
                self.options.clone(),
                self.results.clone(),
                self.stop.clone(),
            )
            .instrument(span.clone()),
        );
        *actions = decided;
        Some(ExpressTicket { claim, ids })
    }

    /// The call ended: its express state is no longer needed.
    pub fn forget(&self, call_id: &str) {
        let mut calls = self.calls.lock().unwrap_or_else(|p| p.into_inner());
        calls.remove(call_id);
    }
}

/// Sends the pop-ups in order (stopping at the first that fails), says so (`answered`),
/// waits for the store to have them, and hands their outcomes to the outbox's result
/// writer.
#[allow(clippy::too_many_arguments)]
async fn send(
    call_id: String,
    actions: Vec<CrmAction>,
    stored: oneshot::Receiver<Vec<i64>>,
    answered: impl FnOnce(),
    crm: CrmClient,
    options: DeliveryOptions,
    results: mpsc::Sender<AttemptResult>,
    stop: CancellationToken,
) {
    let created_at = Timestamp::now();
    let mut outcomes = Vec::with_capacity(actions.len());
    for action in &actions {
        let (started_at, clock) = (Timestamp::now(), Instant::now());
        let sent = tokio::select! {
            sent = crm.send(action, false) => sent,
            // Left claimed: taken over in doubt at the next start.
            _ = stop.cancelled() => return,
        };
        let failed = sent.is_err();
        outcomes.push((
            started_at,
            clock.elapsed(),
            sent.map_err(DeliveryError::Crm),
        ));
        if failed {
            break;
        }
    }
    answered();
    let ids = tokio::select! {
        ids = stored => ids,
        _ = stop.cancelled() => return,
    };
    let Ok(ids) = ids else {
        // The processor stopped before storing the call: nothing to record.
        return;
    };
    if ids.len() != actions.len() {
        debug!("the store already had this ringing: its pop-up is not recorded twice");
        return;
    }
    let mut outcomes = outcomes.into_iter();
    for (id, action) in ids.into_iter().zip(actions) {
        let pending = PendingAction {
            id,
            call_id: call_id.clone(),
            attempts: 0,
            in_doubt: false,
            created_at,
            round_started_at: created_at,
            action,
        };
        let (attempt, settled) = match outcomes.next() {
            Some((started_at, elapsed, result)) => settle(
                pending.action.kind(),
                result,
                &pending,
                started_at,
                elapsed,
                &options,
                Vec::new(),
                Vec::new(),
            ),
            None => (
                crate::store::Attempt {
                    started_at: created_at,
                    elapsed: Duration::ZERO,
                    http_status: None,
                    error: None,
                },
                Settled::Unclaimed,
            ),
        };
        let result = AttemptResult {
            action: pending,
            attempt,
            settled,
        };
        hand_to_writer(&results, result).await;
    }
}

/// Whether this process may send a PBX's pop-ups ahead of the store: only while the
/// latest look at the PBX's followers found it alone, and that look is recent. (With a
/// second process on the PBX, the store decides which one records each ringing step and
/// sends its pop-up; sending first could show it twice.)
#[derive(Debug, Clone)]
pub struct Alone {
    base: Instant,
    /// Microseconds after `base` until which sending ahead is allowed.
    until: Arc<std::sync::atomic::AtomicU64>,
}

impl Default for Alone {
    fn default() -> Self {
        Alone {
            base: Instant::now(),
            until: Arc::new(std::sync::atomic::AtomicU64::new(0)),
        }
    }
}

impl Alone {
    /// Found alone just now: sending ahead is allowed for `valid_for`.
    pub fn confirm(&self, valid_for: Duration) {
        let until = (self.base.elapsed() + valid_for).as_micros();
        self.until.store(
            u64::try_from(until).unwrap_or(u64::MAX),
            std::sync::atomic::Ordering::Release,
        );
    }

    /// Not alone (or not known): pop-ups take the stored path from now.
    pub fn deny(&self) {
        self.until.store(0, std::sync::atomic::Ordering::Release);
    }

    pub fn now(&self) -> bool {
        let now = u64::try_from(self.base.elapsed().as_micros()).unwrap_or(u64::MAX);
        now < self.until.load(std::sync::atomic::Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alone_holds_only_as_long_as_the_look_that_found_it() {
        let alone = Alone::default();
        assert!(!alone.now(), "not known at first");
        alone.confirm(Duration::from_secs(60));
        assert!(alone.clone().now());
        alone.deny();
        assert!(!alone.now());
        alone.confirm(Duration::ZERO);
        assert!(!alone.now(), "a look that is too old counts for nothing");
    }
}
