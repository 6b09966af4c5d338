//! Delivery: the outbox, from the store to the CRM. The outbox: every CRM action is stored before it is attempted and marked done only
//! after the CRM confirmed it. A delivery worker claims due actions from the store (under
//! a lease, so several workers or processes never send one action twice), sends them, one
//! call's actions in order and different calls concurrently (bounded), and retries
//! transient failures with exponential backoff and jitter (honouring `Retry-After`).
//! Actions the CRM refuses for good, and actions still failing `give_up_after` after they
//! were made, are parked as `dead` with the reason. The guarantees per kind of action are
//! in docs/delivery.md.

//!
//! This file holds the `Outbox` handle the call processors store through; `worker`
//! claims due actions and runs them, `attempt` is one attempt at one action (a request,
//! or a matrix decision by `decider`), `settle` records how it ended, `express` sends a
//! ringing call's pop-up before it is stored, and `identity` names this process on its
//! claims.

mod attempt;
pub mod decider;
pub mod express;
pub(crate) mod identity;
mod options;
mod settle;
mod worker;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::sync::Notify;

use crate::actions::CrmAction;
use crate::call::CallUpdate;
use crate::store::{Commit, Store, StoreError};

pub use options::DeliveryOptions;

use express::{ExpressLane, ExpressTicket};
use identity::worker_name;

/// Cheap to clone: the store and a wake-up bell for the worker.
#[derive(Debug, Clone)]
pub struct Outbox {
    store: Store,
    wake: Arc<Notify>,
    /// Set when urgent actions (pop-ups) were stored: the worker claims them on their
    /// own lane at once, without asking the store when there are none.
    urgent: Arc<AtomicBool>,
    /// Pop-ups sent as their ringing is read (see `express`), while `run` delivers.
    express: Arc<std::sync::RwLock<Option<ExpressLane>>>,
    /// This process's name on its claims (and as a PBX's follower).
    worker: Arc<str>,
}

impl Outbox {
    pub fn new(store: Store) -> Self {
        Outbox {
            store,
            wake: Arc::new(Notify::new()),
            urgent: Arc::new(AtomicBool::new(false)),
            express: Arc::new(std::sync::RwLock::new(None)),
            worker: worker_name().into(),
        }
    }

    /// This process's name on its claims: host, process id and a random tag.
    pub fn worker(&self) -> &str {
        &self.worker
    }

    /// Sends a ringing decision's pop-ups now if it can be made from memory, replacing
    /// the decision in `actions` by them; store them with [`Commit::Sending`] under the
    /// ticket's claim, then give the ticket their ids. `None`: store `actions` as usual.
    /// `allowed`: this process is the PBX's one follower (else the ringing is only
    /// noted, so the call's later pop-ups keep their order).
    pub fn send_now(
        &self,
        call_id: &str,
        actions: &mut Vec<CrmAction>,
        span: &tracing::Span,
        allowed: bool,
    ) -> Option<ExpressTicket> {
        let lane = match self.express.read() {
            Ok(lane) => lane,
            Err(poisoned) => poisoned.into_inner(),
        };
        lane.as_ref()?.send_now(call_id, actions, span, allowed)
    }

    /// A call ended: the express lane forgets it.
    pub fn call_ended(&self, call_id: &str) {
        let lane = match self.express.read() {
            Ok(lane) => lane,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some(lane) = lane.as_ref() {
            lane.forget(call_id);
        }
    }

    fn set_express(&self, lane: Option<ExpressLane>) {
        match self.express.write() {
            Ok(mut l) => *l = lane,
            Err(poisoned) => *poisoned.into_inner() = lane,
        }
    }

    fn wake_for(&self, urgent: bool) {
        if urgent {
            self.urgent.store(true, Ordering::Release);
        }
        self.wake.notify_one();
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Stores a batch of call updates, their actions and live-call snapshots (one
    /// transaction), then wakes the worker. Returns each item's new action ids.
    pub async fn commit(&self, items: &[Commit]) -> Result<Vec<Vec<i64>>, StoreError> {
        let ids = self.store.commit_each(items).await?;
        // Actions stored claimed are on their way already: nothing to wake for.
        let waiting = |item: &(&Commit, &Vec<i64>)| {
            !item.1.is_empty() && !matches!(item.0, Commit::Sending { .. })
        };
        let stored: Vec<_> = items.iter().zip(&ids).filter(waiting).collect();
        if !stored.is_empty() {
            let urgent = stored.iter().any(|(item, _)| match item {
                Commit::Update { actions, .. } | Commit::Actions { actions, .. } => {
                    actions.iter().any(CrmAction::is_urgent)
                }
                _ => false,
            });
            self.wake_for(urgent);
        }
        Ok(ids)
    }

    /// Stores a call update and the actions it causes (one transaction), then wakes the
    /// worker.
    pub async fn enqueue(
        &self,
        update: &CallUpdate,
        actions: &[CrmAction],
    ) -> Result<Vec<i64>, StoreError> {
        let ids = self.store.record(update, actions).await?;
        if !ids.is_empty() {
            self.wake_for(actions.iter().any(CrmAction::is_urgent));
        }
        Ok(ids)
    }
}
